//! KEDA + HPA scaling decisions as a pure library, with no I/O and no clock: parse a KEDA `ScaledObject`
//! ([`ScaledObject`], [`ScalingConfig`]), then step a [`Controller`] with the triggers' readings at
//! explicit times to get a [`Decision`] that says, in structure and in words, why it chose its count.
//!
//! the `lab` crate runs this against real consumer processes; the same YAML drives KEDA on a cluster.

pub mod config;
pub mod controller;
pub mod decision;
pub mod hpa;
pub mod spec;

pub use config::{FallbackConfig, Policy, Rules, ScalingConfig, TriggerConfig};
pub use controller::{Controller, Observation, Reading, StepInput};
pub use decision::{Decision, Direction, Limit, MetricEvaluation, MetricStatus, Outcome};
pub use spec::{FallbackBehavior, MetricType, PolicyKind, ScaledObject, SelectPolicy};

/// Why a ScaledObject could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Not YAML, or not of the ScaledObject's shape (unknown field, wrong type).
    #[error("ScaledObject YAML: {0}")]
    Yaml(String),
    /// The text holds no document of kind ScaledObject.
    #[error("no ScaledObject in the YAML (kinds found: {})", if seen_kinds.is_empty() { "none".to_string() } else { seen_kinds.join(", ") })]
    NoScaledObject { seen_kinds: Vec<String> },
    /// A field breaks a rule of the CRD, KEDA's webhook or the HPA API.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}
