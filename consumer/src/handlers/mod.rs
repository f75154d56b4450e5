//! The HTTP handlers: service identity and probes here, load work in [`load`] and [`sustained`], jobs in [`jobs`].
//! Handlers validate, hand work to [`crate::work`] and turn its answers and refusals into responses.

pub mod jobs;
pub mod load;
pub mod sustained;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, http};
use uuid::Uuid;

use crate::api::{JobAccepted, Limits, LoadNow, ServiceInfo, Status};
use crate::error::ApiError;
use crate::jobs::JobState;
use crate::state::AppState;
use crate::work::Refusal;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let message = refusal.to_string();
        match refusal {
            Refusal::QueueFull { queue_size } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                    .with_detail("queue_size", queue_size)
                    .with_retry_after(1)
            }
            Refusal::ExecutorsBusy { executors, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "executors_busy", message)
                    .with_detail("executors", executors)
                    .with_retry_after(1)
            }
            Refusal::Draining => ApiError::draining(),
            Refusal::TooManySustainedWorkers(too_many) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sustained_workers",
                message,
            )
            .with_detail("max_workers", too_many.max_workers)
            .with_detail("active_workers", too_many.active)
            .with_retry_after(1),
            Refusal::Failed(reason) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "work_failed", reason)
            }
        }
    }
}

/// 202 with the job's `Location`.
pub(crate) fn accepted(state: &AppState, id: Uuid, job_state: JobState) -> Response {
    let location = format!("/jobs/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id: id,
            state: job_state,
            location: location.clone(),
            served_by: state.pod_name.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 404 in the JSON error shape for any path no route matches.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// 405 in the JSON error shape (axum adds `Allow`).
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Service identity, limits in force and current load.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, body = ServiceInfo)))]
pub async fn root(State(state): State<AppState>) -> Json<ServiceInfo> {
    let config = &state.config;
    Json(ServiceInfo {
        name: "consumer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pod: state.pod_name.clone(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        started_at: humantime::format_rfc3339_millis(state.started_at).to_string(),
        draining: state.is_draining(),
        auth_required: config.load_token.is_some(),
        limits: Limits {
            memory_budget_bytes: state.memory.budget(),
            executors: config.executors,
            queue_size: config.queue_size,
            max_sustained_workers: config.max_sustained_workers,
            slot_wait_timeout_seconds: config.slot_wait_timeout.as_secs_f64(),
            shutdown_grace_seconds: config.shutdown_grace.as_secs_f64(),
            job_retention_seconds: config.job_retention.as_secs_f64(),
        },
        load: LoadNow {
            jobs_queued: state.executor.waiting(),
            jobs_running: state.executor.running(),
            memory_reserved_bytes: state.memory.reserved(),
            sustained_workers: state.sustained.active_workers(),
        },
    })
}

fn json_type() -> [(http::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )]
}

/// Liveness: cheap, 200 while the process runs.
#[utoipa::path(get, path = contract::routes::HEALTH, tag = "probes", responses((status = 200, body = Status)))]
pub async fn health() -> impl IntoResponse {
    (json_type(), r#"{"status":"ok"}"#)
}

/// Readiness: 200 normally, 503 from the moment shutdown starts; in Kafka mode also 503 until the group assigned
/// this member its partitions (possibly none: an idle member is ready and says so).
#[utoipa::path(get, path = contract::routes::READY, tag = "probes", responses(
    (status = 200, description = "taking work", body = Status),
    (status = 503, description = "draining, or (Kafka mode) no partition assignment yet", body = Status),
))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let status = |code: StatusCode, body: Status| {
        let json = serde_json::to_string(&body).unwrap_or_default();
        (code, json_type(), json)
    };
    if state.is_draining() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            Status {
                status: "draining".into(),
                ..Status::default()
            },
        );
    }
    // In Kafka mode a replica is ready once the group has given it its share, even an empty one.
    match state.kafka.as_ref().and_then(|kafka| kafka.assigned()) {
        None if state.kafka.is_some() => status(
            StatusCode::SERVICE_UNAVAILABLE,
            Status {
                status: "waiting for a partition assignment".into(),
                ..Status::default()
            },
        ),
        None => status(
            StatusCode::OK,
            Status {
                status: "ready".into(),
                ..Status::default()
            },
        ),
        Some(partitions) => status(
            StatusCode::OK,
            Status {
                status: "ready".into(),
                kafka_partitions: Some(u32::try_from(partitions).unwrap_or(u32::MAX)),
                kafka: (partitions == 0)
                    .then(|| "idle: the group assigned this member no partition".to_owned()),
            },
        ),
    }
}

/// Prometheus text exposition (see ARCHITECTURE.md's metric contract).
#[utoipa::path(get, path = contract::routes::METRICS, tag = "probes", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
}
