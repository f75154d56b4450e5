//! `POST /api/runs/{id}/chaos`: the console's chaos buttons. The fault is checked as a profile's `chaos:` entry is
//! (the same fields and rules), carried out at once on the active run through its [`ChaosPort`], and measured with
//! the run's other faults in its report.
//!
//! [`ChaosPort`]: crate::chaos::ChaosPort

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chaos_spec::{ChaosAction, ChaosSpec, ChaosTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::form;
use super::routes::{Shared, refusal};
use crate::chaos::{Fault, PortError};

/// `POST /api/runs/{id}/chaos`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChaosRequest {
    /// `kill`, `terminate`, `freeze`, `kill-scaler` or `freeze-scaler` (a profile's `chaos:` actions).
    pub action: String,
    /// `replica` (the oldest ready one), `replica-N`, or `scaler`; default: the action's.
    pub target: Option<String>,
    /// Wall-clock seconds (not time-scaled): how long a freeze lasts (required for `freeze*`), or a kill's restart
    /// back-off (default: the run's). Not allowed for `terminate`.
    pub duration_s: Option<f64>,
}

/// What was hit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChaosDone {
    pub action: String,
    pub target: String,
    /// `consumer-2 (pid 1234)` or `scaler (pid 99)`.
    pub hit: String,
}

/// Break something in the active run now (issue 12's lab faults); it is measured in the run's report.
#[utoipa::path(post, path = "/api/runs/{id}/chaos", params(("id" = String, Path)), request_body = ChaosRequest,
    responses((status = 202, body = ChaosDone), (status = 404, body = ErrorBody),
        (status = 409, description = "the run is not loading, or the fault found nothing to hit", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn inject(
    State(c): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChaosDone>), ApiError> {
    let spec = parse(&body)?;
    let port = c.manager.chaos(&id).map_err(|r| refusal(&id, r))?;
    let fault = Fault::from_spec(&spec);
    match port.inject(&fault).await {
        Ok(hit) => Ok((
            StatusCode::ACCEPTED,
            Json(ChaosDone {
                action: spec.action.to_string(),
                target: spec.target().to_string(),
                hit,
            }),
        )),
        Err(PortError::Closed) => Err(ApiError::conflict(
            "not_loading",
            PortError::Closed.to_string(),
        )),
        Err(PortError::Missed(e)) => Err(ApiError::conflict("nothing_hit", e.to_string())),
    }
}

/// The body as a chaos entry, checked by the profile's own rules.
fn parse(body: &[u8]) -> Result<ChaosSpec, ApiError> {
    let map = form::object(body)?;
    form::only(&map, &["action", "target", "duration_s"])?;
    let allowed_actions = ChaosAction::allowed_in(chaos_spec::ChaosPlace::Lab);
    let action = match map.get("action") {
        Some(Value::String(text)) => ChaosAction::parse(text),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::field(
            "action",
            map.get("action").cloned().unwrap_or(Value::Null),
            &allowed_actions,
            format!("action must be one of {allowed_actions}"),
        )
    })?;
    if let Err(why) = action.check_place(chaos_spec::ChaosPlace::Lab) {
        return Err(ApiError::field(
            "action",
            Value::String(action.to_string()),
            &allowed_actions,
            why,
        ));
    }
    let target = match map.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(ChaosTarget::parse(text).ok_or_else(|| {
            ApiError::field(
                "target",
                Value::String(text.clone()),
                "replica, replica-N (N >= 1), scaler",
                "target must be replica, replica-N or scaler",
            )
        })?),
        Some(other) => {
            return Err(ApiError::field(
                "target",
                other.clone(),
                "replica, replica-N (N >= 1), scaler",
                "target must be a string",
            ));
        }
    };
    let duration = form::number(&map, "duration_s", (0.1, 3600.0))?.map(Duration::from_secs_f64);
    let spec = ChaosSpec {
        at: Duration::ZERO,
        action,
        target,
        duration,
    };
    spec.check(None).map_err(|(field, reason)| {
        let field = if field == "duration" {
            "duration_s".to_string()
        } else {
            field
        };
        let value = map.get(&field).cloned().unwrap_or(Value::Null);
        let allowed = match field.as_str() {
            "target" if action.on_scaler() => "scaler",
            "target" => "replica, replica-N (N >= 1)",
            "duration_s" => {
                "0.1..=3600; required for freeze and freeze-scaler, not allowed for terminate"
            }
            _ => "",
        };
        ApiError::field(&field, value, allowed, format!("{field} {reason}"))
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> ErrorBody {
        *parse(body.as_bytes()).expect_err(body).body
    }

    #[test]
    fn a_chaos_request_is_checked_like_a_profile_entry() {
        let spec = parse(br#"{"action":"freeze","target":"replica-2","duration_s":3}"#).unwrap();
        assert_eq!(spec.action, ChaosAction::Freeze);
        assert_eq!(spec.target(), ChaosTarget::ReplicaN(2));
        assert_eq!(spec.duration, Some(Duration::from_secs(3)));
        assert_eq!(
            parse(br#"{"action":"kill-scaler"}"#).unwrap().target(),
            ChaosTarget::Scaler
        );

        assert_eq!(
            error(r#"{"action":"explode"}"#).field.as_deref(),
            Some("action")
        );
        assert_eq!(
            error(r#"{"action":"kill","target":"replica-0"}"#)
                .field
                .as_deref(),
            Some("target")
        );
        assert_eq!(
            error(r#"{"action":"kill","target":"scaler"}"#)
                .field
                .as_deref(),
            Some("target")
        );
        assert_eq!(
            error(r#"{"action":"freeze"}"#).field.as_deref(),
            Some("duration_s")
        );
        assert_eq!(
            error(r#"{"action":"terminate","duration_s":2}"#)
                .field
                .as_deref(),
            Some("duration_s")
        );
        assert_eq!(
            error(r#"{"action":"freeze","duration_s":0}"#)
                .field
                .as_deref(),
            Some("duration_s")
        );
        assert_eq!(
            error(r#"{"action":"kill","when":"now"}"#).field.as_deref(),
            Some("when")
        );
    }
}
