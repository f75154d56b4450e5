//! `POST /load/cpu`, `/load/memory` and `/load/io`: validate, refuse while draining, admit through
//! [`crate::work::submit`]; answer the sync report (200) or the queued job (202).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::{
    CpuLoadRequest, CpuLoadResponse, IoLoadRequest, IoLoadResponse, MemoryLoadRequest,
    MemoryLoadResponse,
};
use crate::error::{ApiError, ErrorBody};
use crate::jobs::JobState;
use crate::metrics::label;
use crate::state::AppState;
use crate::validate::{JsonObject, Mode};
use crate::work::{self, Admitted, Report, Work};

/// Admits `work` and answers: the sync report as its kind's response body, or 202 for a queued job.
async fn run(
    state: AppState,
    work: Work,
    mode: Mode,
    request: Value,
) -> Result<Response, ApiError> {
    let kind = work.kind();
    let done = match work::submit(&state, work, mode, request).await? {
        Admitted::Queued(id) => return Ok(super::accepted(&state, id, JobState::Queued)),
        Admitted::Finished(done) => done,
    };
    let served_by = state.pod_name.clone();
    let (queue_wait_seconds, run_seconds) = (done.queue_wait.as_secs_f64(), done.run.as_secs_f64());
    let kind = kind.to_owned();
    let request = done.request;
    Ok(match done.report {
        Report::Cpu(result) => Json(CpuLoadResponse {
            kind,
            queue_wait_seconds,
            run_seconds,
            served_by,
            request,
            result,
        })
        .into_response(),
        Report::Memory(result) => Json(MemoryLoadResponse {
            kind,
            queue_wait_seconds,
            run_seconds,
            served_by,
            request,
            result,
        })
        .into_response(),
        Report::Io(result) => Json(IoLoadResponse {
            kind,
            queue_wait_seconds,
            run_seconds,
            served_by,
            request,
            result,
        })
        .into_response(),
    })
}

/// Burns one core for `duration_ms` of CPU time on a dedicated thread.
#[utoipa::path(post, path = "/load/cpu", tag = "load", request_body(content = Option<CpuLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = CpuLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = crate::api::JobAccepted,
            headers(("Location" = String, description = "the job: /jobs/{id}"))),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 422, description = "a field is unknown, of the wrong type or out of range", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "no executor slot in time, or draining", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn load_cpu(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = CpuLoadRequest::from_json(body)?;
    work::refuse_if_draining(&state)?;
    let work = Work::Cpu {
        cpu_target: Duration::from_millis(request.duration_ms),
        complexity: request.complexity,
    };
    run(state, work, request.mode, serde_json::json!(request)).await
}

/// Allocates and touches `size_mb` MiB, holds it for `duration_ms`, frees it; bounded by the memory budget.
#[utoipa::path(post, path = "/load/memory", tag = "load", request_body(content = Option<MemoryLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = MemoryLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = crate::api::JobAccepted,
            headers(("Location" = String, description = "the job: /jobs/{id}"))),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 422, description = "a field is unknown, of the wrong type or out of range", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "over the memory budget (with budget_bytes, held_bytes, requested_bytes), no slot, or draining", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn load_memory(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = MemoryLoadRequest::from_json(body)?;
    work::refuse_if_draining(&state)?;
    let bytes = request.size_mb << 20;
    let reservation = state.memory.reserve(bytes).map_err(|over| {
        state
            .metrics
            .job_finished(label::MEMORY, request.mode.as_str(), label::REJECTED);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory_budget_exceeded",
            format!(
                "{} MiB would exceed the memory budget: {} of {} bytes are already held",
                request.size_mb, over.held, over.budget
            ),
        )
        .with_detail("budget_bytes", over.budget)
        .with_detail("held_bytes", over.held)
        .with_detail("requested_bytes", over.requested)
        .with_retry_after(1)
    })?;
    let work = Work::Memory {
        reservation,
        hold: Duration::from_millis(request.duration_ms),
    };
    run(state, work, request.mode, serde_json::json!(request)).await
}

/// Waits `delay_ms` without CPU while holding an executor slot (a slow downstream).
#[utoipa::path(post, path = "/load/io", tag = "load", request_body(content = Option<IoLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = IoLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = crate::api::JobAccepted,
            headers(("Location" = String, description = "the job: /jobs/{id}"))),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 422, description = "a field is unknown, of the wrong type or out of range", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "no executor slot in time, or draining", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn load_io(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = IoLoadRequest::from_json(body)?;
    work::refuse_if_draining(&state)?;
    let work = Work::Io {
        delay: Duration::from_millis(request.delay_ms),
    };
    run(state, work, request.mode, serde_json::json!(request)).await
}
