//! `GET /jobs/{id}` and `DELETE /jobs/{id}`: follow and cancel async and sustained jobs.

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::jobs::JobView;
use crate::state::AppState;

/// A malformed id is a job that does not exist: 404, like an unknown one.
fn parse_job_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no job {id} (job ids are UUIDs)")))
}

/// One job: state, timings and result.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id from a 202 response")),
    responses(
        (status = 200, body = JobView),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 404, description = "unknown, or forgotten after the retention time", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_job_id(&id)?;
    state.jobs.get(id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no job {id} (unknown, or finished longer ago than the retention time)"
        ))
    })
}

/// Cancels a queued or running job; answers its view (a finished job is left as it is). The job stays readable at
/// `GET /jobs/{id}` (state `cancelled`) until the retention time passes.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id from a 202 response")),
    responses(
        (status = 200, description = "the job after cancelling", body = JobView),
        (status = 401, description = "token required", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 404, description = "unknown, or forgotten after the retention time", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job_cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_job_id(&id)?;
    state
        .jobs
        .cancel(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}
