//! The contract between the lab's processes, written once: what one binary emits and another (or a dashboard, a test, a
//! manifest) reads. Metric and label names ([`metrics`]), probe and API routes ([`routes`]), HTTP headers
//! ([`headers`]), the `listening` log line ([`listening`]), the scaler's `/explain` document ([`explain`]), the report
//! schema ids ([`report`]) and every binary's exit codes ([`exit`]).
//!
//! This crate depends on serde (and humantime for [`duration_text`], how profiles write times) only: it has no I/O, no runtime and no clock, so every crate (the consumer included) can
//! depend on it without pulling anything else in. ARCHITECTURE.md documents the same names in prose; the test
//! `contract_names_are_documented` keeps the two in step.

pub mod duration_text;
pub mod error;
pub mod exit;
pub mod explain;
pub mod kafka;
pub mod listening;
pub mod metrics;

/// Probe, scrape and API routes every HTTP side of the lab serves.
/// The SLO a run is judged by when it names none (the generator's chaos recovery, the lab's scaling report): the
/// demo's one replica runs at a p95 of ~800 ms and six at ~200 ms, so 500 ms shows the under-provisioning and is met
/// once the replicas caught up. Parsed by `timeline::Slo`.
pub const DEFAULT_SLO: &str = "p95<500ms,errors<1%";

pub mod routes {
    /// Liveness: 200 while the process runs.
    pub const HEALTH: &str = "/health";
    /// Readiness: 200 while the process takes work, 503 once it drains.
    pub const READY: &str = "/ready";
    /// Prometheus text exposition.
    pub const METRICS: &str = "/metrics";
    /// The scaler's explanation of every trigger it serves ([`crate::explain::Explain`]).
    pub const EXPLAIN: &str = "/explain";
    /// The consumer's OpenAPI document.
    pub const OPENAPI_SPEC: &str = "/apispec.json";
    /// The consumer's Swagger UI.
    pub const OPENAPI_UI: &str = "/apidocs";
    /// Routes that probes and scrapers call: excluded from the scaler's default request-rate and latency triggers so
    /// that probing never scales a Deployment.
    pub const PROBES: [&str; 3] = [HEALTH, READY, METRICS];
}

/// HTTP headers with a meaning across processes.
pub mod headers {
    /// Set by every consumer response: the replica (pod name) that answered. The generator counts answers per replica
    /// from it.
    pub const SERVED_BY: &str = "x-served-by";
    /// The lab console's API token (`--ui-token`): required on every `/api/` request when one is set.
    pub const LAB_TOKEN: &str = "x-lab-token";
}

/// Schema ids of the documents the lab writes, so readers can refuse what they do not understand.
pub mod report {
    /// The generator's `report.json` (`generator run --report`, the lab's `report.json`). v2 added the scaling
    /// report's analysis under `scaling` (`events[]`, `scale_downs[]`, `cost`, `advice[]`: docs/scaling-report.md).
    pub const GENERATOR_REPORT_SCHEMA: &str = "autoscaling-lab/generator-report/v2";
}
