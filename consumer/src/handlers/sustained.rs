//! `POST /load/cpu/sustained`, `GET /load/cpu/sustained/status`, `POST /load/cpu/sustained/stop`: long-running
//! multi-core CPU jobs.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::Value;

use crate::api::{SustainedLoadRequest, SustainedStatus, SustainedStopRequest, SustainedStopped};
use crate::error::{ApiError, ErrorBody};
use crate::jobs::JobState;
use crate::metrics::label;
use crate::state::AppState;
use crate::validate::{Fields, JsonObject};
use crate::work;

/// Starts a sustained CPU job on dedicated threads; answers 202 at once.
#[utoipa::path(post, path = "/load/cpu/sustained", tag = "sustained", request_body(content = Option<SustainedLoadRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "started; follow Location", body = crate::api::JobAccepted,
            headers(("Location" = String, description = "the job: /jobs/{id}"))),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 422, description = "a field is unknown, of the wrong type or out of range", body = ErrorBody),
        (status = 429, description = "too many sustained workers on this replica", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "draining", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_start(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = SustainedLoadRequest::from_json(body)?;
    work::refuse_if_draining(&state)?;
    let id = work::start_sustained(&state, &request)?;
    Ok(super::accepted(&state, id, JobState::Running))
}

/// Sustained jobs: all, or one with `?job_id=`.
#[utoipa::path(get, path = "/load/cpu/sustained/status", tag = "sustained",
    params(("job_id" = Option<uuid::Uuid>, Query, description = "only this job")),
    responses(
        (status = 200, body = SustainedStatus),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 404, description = "no such sustained job", body = ErrorBody),
        (status = 422, description = "bad job_id or unknown parameter", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_status(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<SustainedStatus>, ApiError> {
    let fields = Fields::new(
        query
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
        &["job_id"],
    )?;
    let jobs = match fields.uuid("job_id")? {
        Some(id) => {
            let job = state
                .jobs
                .get(id)
                .filter(|job| job.kind == label::SUSTAINED);
            vec![job.ok_or_else(|| ApiError::not_found(format!("no sustained job {id}")))?]
        }
        None => state.jobs.list(Some(label::SUSTAINED)),
    };
    Ok(Json(SustainedStatus {
        active_workers: state.sustained.active_workers(),
        max_workers: state.config.max_sustained_workers,
        jobs,
    }))
}

/// Stops one sustained job (`{"job_id"}`) or all (empty body).
#[utoipa::path(post, path = "/load/cpu/sustained/stop", tag = "sustained", request_body(content = Option<SustainedStopRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = SustainedStopped),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 404, description = "no such sustained job", body = ErrorBody),
        (status = 422, description = "a field is unknown or not a job id", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_stop(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<SustainedStopped>, ApiError> {
    let request = SustainedStopRequest::from_json(body)?;
    let stopped = match request.job_id {
        Some(id) => {
            if state.jobs.kind_of(id).as_deref() != Some(label::SUSTAINED) {
                return Err(ApiError::not_found(format!("no sustained job {id}")));
            }
            let job = state
                .jobs
                .cancel(id)
                .ok_or_else(|| ApiError::not_found(format!("no sustained job {id}")))?;
            if job.state.is_finished() {
                vec![]
            } else {
                vec![id]
            }
        }
        None => state.jobs.cancel_kind(label::SUSTAINED),
    };
    Ok(Json(SustainedStopped { stopped }))
}
