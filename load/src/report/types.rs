//! The report's schema: the JSON document `generator run --report` writes and the lab reads back (docs/generator.md
//! describes each field). Data only; [`super::analysis`] fills it in, [`super::text`] and [`super::svg`] render it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::TimelinePoint;
use crate::stats::{EndpointSummary, ErrorSummary, IntervalStats, LatencySummary};

/// Version tag of the JSON report; bumped on incompatible changes.
pub const REPORT_SCHEMA: &str = contract::report::GENERATOR_REPORT_SCHEMA;

/// The generator's verdict on itself over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSelfCheck {
    /// How late requests started compared with their schedule.
    pub schedule_lag: LatencySummary,
    pub generator_cpu_seconds: Option<f64>,
    pub generator_cpu_seconds_per_1000_requests: Option<f64>,
    pub saturated_intervals: u64,
    /// The generator, not the target, limited the run (>= 2 intervals and >= 10 % of them saturated).
    pub saturated: bool,
    pub message: String,
}

/// Requests, errors and latency in one phase of the run (scaling up, or steady).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub intervals: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub dropped: u64,
    /// Median and maximum of the intervals' p95 latency.
    pub p95_ms_median: f64,
    pub p95_ms_max: f64,
}

/// What the autoscaler did about the load (with `--monitor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalingReport {
    pub source: String,
    pub observations: u64,
    pub observation_errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Replicas at the first observation (the minimum the run started from).
    pub initial_replicas: Option<u32>,
    pub peak_replicas: Option<u32>,
    pub peak_at_s: Option<f64>,
    pub peak_desired_replicas: Option<u32>,
    /// Load start to the first observation with more desired replicas than at the start.
    pub time_to_scale_s: Option<f64>,
    /// Load start to the first observation with more ready replicas than at the start.
    pub time_to_first_new_ready_s: Option<f64>,
    /// Where the load ends: the last time the arrival rate was at least half its peak.
    pub load_end_s: f64,
    /// From `load_end_s` to the first observation back at the initial replica count (`null` if not seen; use
    /// `--watch-after` to keep observing).
    pub time_to_scale_down_s: Option<f64>,
    /// Intervals inside an under-provisioned window of the analysis (`scaling.events[]`: from the event's demand to
    /// its recovery, `under_provisioned_s` long): the load the autoscaler had not caught up with yet, including the
    /// wait for the signal and the decision (not only for pods). Zero intervals without an SLO or capacity.
    pub during_scale_up: PhaseStats,
    /// All other intervals with an observation.
    pub steady: PhaseStats,
    /// Where the analysis's decision times came from (`HPA SuccessfulRescale events`, or `desiredReplicas changes
    /// between observations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions_from: Option<String>,
    /// Inputs of the analysis the source could not read (`events: 403 ...`): the phases they would have timed rest on
    /// the coarser observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs_missing: Vec<String>,
    /// Sum over the run of ready replicas x seconds.
    pub replica_seconds: f64,
    pub replica_seconds_per_1000_requests: Option<f64>,
    pub timeline: Vec<TimelinePoint>,
    /// Where the time to scale went: scale events with their six phases, the SLO lost, scale-down cost and advice
    /// (the `timeline` crate's analysis, docs/scaling-report.md), flattened into this object: `scaling.events[]`,
    /// `scaling.scale_downs[]`, `scaling.cost`, `scaling.advice[]`, `scaling.slo`, `scaling.schema`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<timeline::ScalingAnalysis>,
}

/// CPU the target used during the run: cost per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCpu {
    /// The PromQL that measured it (`{range}` replaced by the run's length).
    pub query: String,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000_requests: Option<f64>,
}

/// One threshold and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub expression: String,
    pub actual: Option<f64>,
    pub unit: String,
    pub passed: bool,
    pub message: String,
}

/// The run report (the JSON file's schema; see docs/generator.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub profile: String,
    /// `open` or `closed-loop`.
    pub mode: String,
    pub split_index: u32,
    pub split_count: u32,
    pub targets: Vec<String>,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Load phase length in seconds.
    pub duration_s: f64,
    /// Whole run including `--watch-after`, in seconds.
    pub elapsed_s: f64,
    pub interrupted: bool,
    /// Requests finished (any outcome).
    pub requests: u64,
    /// Requests the schedule asked this generator for.
    pub expected_requests: f64,
    pub ok: u64,
    /// Finished requests per second over the load phase.
    pub achieved_rate: f64,
    /// Mean arrival rate asked for (req/s).
    pub target_rate: f64,
    pub errors: ErrorSummary,
    /// errors.total / requests.
    pub error_rate: f64,
    /// Requests that could not start on time (outstanding cap reached).
    pub dropped: u64,
    /// dropped / (requests + dropped).
    pub dropped_rate: f64,
    /// Still outstanding when the run ended (after an interruption's drain timeout).
    pub unfinished: u64,
    /// Latency from the scheduled start, overall.
    pub latency: LatencySummary,
    pub endpoints: BTreeMap<String, EndpointSummary>,
    /// Which replica answered how many requests (`x-served-by`).
    pub served_by: BTreeMap<String, u64>,
    pub self_check: RunSelfCheck,
    pub intervals: Vec<IntervalStats>,
    pub scaling: Option<ScalingReport>,
    /// The target's CPU cost over the run, from Prometheus (`--prometheus-url`), when measured.
    #[serde(default)]
    pub target_cpu: Option<TargetCpu>,
    pub thresholds: Vec<ThresholdResult>,
    /// Faults injected by the lab and their recovery figures (`None`: no chaos in this run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<super::ChaosReport>,
    /// One line: what happened and why the exit code.
    pub verdict: String,
    pub exit_code: i32,
}
