//! Errors: [`ApiError`], the one JSON error shape every HTTP error uses, and [`ConsumerError`], what `serve` can
//! fail with.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Failures of the server as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The listener or the HTTP server failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// Kafka mode could not start (clients, subscription).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Why Kafka mode could not start.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct KafkaError(pub(crate) String);

/// The JSON error body: `{"error", "message", "field"?, "value"?, "allowed"?, ...details}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `out_of_range`, `invalid_type`, `unknown_field`, `invalid_json`, `queue_full`,
    /// `memory_budget_exceeded`, `executors_busy`, `draining`, `unauthorized`, `not_found`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value given for that field, echoed as it came: a string, number, boolean, array, object or null.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = any_json_value)]
    pub value: Option<Value>,
    /// The allowed range or set for that field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// Extra figures for some errors (e.g. `budget_bytes`, `held_bytes`, `requested_bytes`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
}

/// Any JSON value (no `type`): what a client sent, echoed back.
fn any_json_value() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(
            "The value given for that field, echoed as it came (any JSON value).",
        ))
        .build()
}

/// An HTTP error: status, body and optional `Retry-After`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in `Result`s on hot paths, keep them small.
    pub body: Box<ErrorBody>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                field: None,
                value: None,
                allowed: None,
                details: Map::new(),
            }),
            retry_after_seconds: None,
        }
    }

    /// A 422 about one field.
    pub fn field(
        code: &str,
        field: &str,
        value: Value,
        allowed: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        error.body.field = Some(field.to_owned());
        error.body.value = Some(value);
        error.body.allowed = Some(allowed.into());
        error
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.body.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_seconds = Some(seconds);
        self
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn draining() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this replica is shutting down and accepts no new work; retry on another replica",
        )
        .with_retry_after(1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
