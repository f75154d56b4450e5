//! Triggers: what a ScaledObject's `metadata` (KEDA's `scalerMetadata`) asks the scaler to measure, validated once.
//!
//! - [`kind`]: the trigger kinds (`trigger: request_rate`, ...), one enum, and what each accepts;
//! - [`metadata`]: parsing and validating the metadata map into a [`TriggerSpec`];
//! - [`source`]: where the values come from (`serverAddress`, `targets`, `--prometheus-url`);
//! - [`selector`]: the `selector` grammar (PromQL label matchers);
//! - [`promql`]: the PromQL a trigger runs on Prometheus, and its direct-source twin (which series count);
//! - [`naming`]: the trigger's external metric name (`metricName`);
//! - [`kafka`]: the `kafka` trigger's keys, with KEDA's names, defaults and checks.

pub mod kafka;
pub mod kind;
pub mod metadata;
pub mod naming;
pub mod promql;
pub mod selector;
pub mod source;

use std::time::Duration;

/// How the ScaledObject hands the metric to the HPA (`autoscaler`'s type: one definition for the whole lab). The
/// scaler accepts `AverageValue` and `Value` only; it needs the type just to explain the replica count.
pub use autoscaler::MetricType;
pub use kafka::{KafkaSpec, OffsetResetPolicy};
pub use kind::{Kind, TRIGGER_KINDS};
pub use metadata::KEDA_CONNECTION_KEYS;
pub use selector::{MatchOp, Matcher, escape_label_value, parse_selector};
pub use source::{DEFAULT_DIRECT_PORT, DirectTargets, SourceSpec};

/// Why a trigger's metadata was refused. Every variant names the key at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerError {
    #[error("unknown metadata key `{key}` for trigger `{trigger}`; allowed keys: {allowed}")]
    UnknownKey {
        key: String,
        trigger: String,
        allowed: String,
    },
    #[error("missing metadata key `{key}`: {hint}")]
    Missing { key: String, hint: String },
    #[error("metadata key `{key}` has invalid value {value:?}: {reason} (allowed: {allowed})")]
    Invalid {
        key: String,
        value: String,
        reason: String,
        allowed: String,
    },
}

impl TriggerError {
    /// The metadata key at fault.
    pub fn key(&self) -> &str {
        match self {
            TriggerError::UnknownKey { key, .. }
            | TriggerError::Missing { key, .. }
            | TriggerError::Invalid { key, .. } => key,
        }
    }

    pub(crate) fn invalid(
        key: &str,
        value: &str,
        reason: impl Into<String>,
        allowed: &str,
    ) -> Self {
        TriggerError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
            allowed: allowed.to_string(),
        }
    }
}

/// What a trigger measures, with the parameters only some kinds have.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Requests per second across all pods (probe routes excluded unless `route` names one).
    RequestRate,
    /// A quantile of request latency in seconds.
    Latency { quantile: f64 },
    /// Bytes allocated per second across all pods.
    AllocatorPressure,
    /// Async jobs queued plus jobs running, across all pods.
    Backlog,
    /// Any PromQL the user gives (Prometheus source only).
    Query { query: String },
    /// A consumer group's lag on a Kafka topic, with KEDA's rules (`crate::kafka::lag`).
    Kafka(KafkaSpec),
}

impl TriggerKind {
    /// The kind without its parameters.
    pub fn kind(&self) -> Kind {
        match self {
            TriggerKind::RequestRate => Kind::RequestRate,
            TriggerKind::Latency { .. } => Kind::Latency,
            TriggerKind::AllocatorPressure => Kind::AllocatorPressure,
            TriggerKind::Backlog => Kind::Backlog,
            TriggerKind::Query { .. } => Kind::Query,
            TriggerKind::Kafka(_) => Kind::Kafka,
        }
    }

    /// The `trigger` metadata value naming this kind.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// A validated trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    pub kind: TriggerKind,
    pub source: SourceSpec,
    /// Per-replica target (AverageValue) or the target value (Value).
    pub target: f64,
    /// Active when the value is strictly above this.
    pub activation_target: f64,
    /// Scope to one route template, e.g. `/load/cpu`.
    pub route: Option<String>,
    /// Rate / quantile window.
    pub window: Duration,
    /// Extra label matchers.
    pub selector: Vec<Matcher>,
    /// Stable and unique per trigger; independent of `target` and `activationTarget`.
    pub metric_name: String,
    pub metric_type: MetricType,
    /// Prometheus source: an empty result counts as 0 (true, KEDA's default) or as an error.
    pub ignore_null_values: bool,
    /// `unsafeSsl: "true"`: an https source's certificate is not verified (as in KEDA's own Prometheus trigger).
    pub unsafe_ssl: bool,
}
