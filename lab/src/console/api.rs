//! The console API's shapes (CONSOLE-API.md): what the page and scripts send and receive. Times `t_s` are seconds
//! since the run's load start; wall times are RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A run's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Running,
    Settling,
    Finished,
    Failed,
    Stopped,
}

impl Status {
    /// Finished, failed or stopped: nothing more happens to the run.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Stopped)
    }
}

/// The figures of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub p95_ms: f64,
    pub max_replicas_seen: u32,
    pub time_to_scale_s: Option<f64>,
}

/// What a run is: listed in history, sent on every status change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunMeta {
    /// `YYYYMMDD-HHMMSS-profile`, sortable and unique in the runs directory.
    pub id: String,
    pub label: String,
    pub profile: String,
    pub status: Status,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub time_scale: f64,
    pub rate_multiplier: f64,
    /// The ScaledObject's name.
    pub scaledobject: String,
    pub max_replicas: Option<u32>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub summary: Option<Summary>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<&load::stats::LatencySummary> for Latency {
    fn from(l: &load::stats::LatencySummary) -> Latency {
        Latency {
            p50: l.p50_ms,
            p90: l.p90_ms,
            p95: l.p95_ms,
            p99: l.p99_ms,
            p99_9: l.p99_9_ms,
            max: l.max_ms,
            mean: l.mean_ms,
        }
    }
}

/// One endpoint (request-mix path) over one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EndpointSample {
    pub rps: f64,
    pub errors: u64,
    pub latency_ms: Latency,
}

/// Replica counts at a sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Replicas {
    pub desired: Option<u32>,
    pub current: Option<u32>,
    pub ready: Option<u32>,
    pub draining: Option<u32>,
}

/// One trigger's reading at a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerReading {
    pub name: String,
    pub value: Option<f64>,
    pub target: f64,
    /// The HPA's usage ratio: value / target for `Value`, value / (target x current replicas) for `AverageValue`.
    pub ratio: Option<f64>,
}

/// One load interval (a second) of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sample {
    /// The interval's end.
    pub t_s: f64,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub in_flight: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    pub endpoints: BTreeMap<String, EndpointSample>,
    pub replicas: Replicas,
    pub triggers: Vec<TriggerReading>,
    /// The `backlog` trigger's value, when the ScaledObject has one.
    pub backlog: Option<f64>,
    pub rate_multiplier: f64,
    /// The scale event's phase in progress, in words.
    pub phase: Option<String>,
}

/// A line the lab noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Note {
    pub t_s: f64,
    pub text: String,
}

/// A trigger of the run's ScaledObject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerInfo {
    pub name: String,
    pub metric_type: String,
    pub target: Option<f64>,
}

/// One phase of a scale event from the scaling report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhaseSpan {
    pub event: u32,
    /// `scale-up` or `scale-down`.
    pub kind: String,
    pub phase: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A change of the desired replica count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScaleEvent {
    pub t_s: f64,
    pub from: u32,
    pub to: u32,
}

/// Everything known about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunData {
    pub meta: RunMeta,
    pub samples: Vec<Sample>,
    /// The lab's decision records (decisions.jsonl), `t_s` re-based to the load start.
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<crate::view::DecisionRecord>,
    pub notes: Vec<Note>,
    pub triggers: Vec<TriggerInfo>,
    pub phases: Vec<PhaseSpan>,
    pub scale_events: Vec<ScaleEvent>,
    /// report.json, once the run has finished.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
}

/// A built-in load profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileInfo {
    pub name: String,
    pub description: String,
    pub duration_s: f64,
    /// The profile as YAML (editable and sent back as `profile_yaml`).
    pub yaml: String,
}

/// The repository's ScaledObject.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScaledObjectInfo {
    /// Its path, or `built-in`.
    pub source: String,
    pub yaml: String,
}

/// `POST /api/validate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// `profile` or `scaledobject`.
    pub kind: String,
    pub yaml: String,
}

/// A valid document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidateOk {
    pub ok: bool,
    pub summary: String,
}

/// `POST /api/runs`: every field optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// A built-in profile name (default `demo` when no `profile_yaml`).
    pub profile: Option<String>,
    /// A profile as YAML (instead of `profile`).
    pub profile_yaml: Option<String>,
    /// 0.01..=10, default 0.5.
    pub time_scale: Option<f64>,
    /// 0.1..=10, default 1.
    pub rate_multiplier: Option<f64>,
    /// Stretch or cut the profile to this many seconds (before the time scale), 1..=86400.
    pub duration_s: Option<f64>,
    /// A ScaledObject as YAML (default: the repository's).
    pub scaledobject_yaml: Option<String>,
    /// 1..=64.
    pub max_replicas: Option<u32>,
    /// e.g. `p95<500ms,errors<1%`.
    pub slo: Option<String>,
    /// Free text shown in history (at most 200 characters).
    pub label: Option<String>,
}

/// `POST /api/runs/{id}/rate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateRequest {
    /// 0.1..=10.
    pub multiplier: f64,
}

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}
