//! Errors: [`ApiError`], the one JSON error shape every HTTP error uses, and [`ConsumerError`], what `serve` can
//! fail with.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

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

pub use contract::error::ErrorBody;

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
            body: Box::new(ErrorBody::new(code, message)),
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
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: Box::new(ErrorBody::new(code, message).at_field(field, value, allowed)),
            retry_after_seconds: None,
        }
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
