//! What the engine needs of a replica source: the trait it polls during a run, the snapshot and the error of one
//! observation, and what a source recorded for the scaling analysis. The sources themselves (the Kubernetes API, the
//! scaler's `/explain`, Prometheus) live in the `monitor` crate; the lab implements the trait over its own replicas.

pub mod record;

use futures::future::BoxFuture;

pub use crate::model::ReplicaSnapshot;
pub use record::ScalingRecord;

/// Why an observation failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("kubernetes API: {0}")]
    Kube(String),
    #[error("scaler /explain at {url}: {reason}")]
    Explain { url: String, reason: String },
    #[error("prometheus at {url}: {reason}")]
    Prometheus { url: String, reason: String },
    #[error("no replica source answered: {0}")]
    NoSource(String),
    #[error("{0}")]
    Other(String),
}

/// Something that can tell how many replicas the target has. The generator polls it during a run; the lab implements
/// it over its own replica controller.
pub trait ReplicaSource: Send + Sync {
    /// Observe the replicas now.
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>>;
    /// A short name for logs and the report.
    fn name(&self) -> String;
    /// What the source recorded for the scaling analysis beyond the counts (decisions, pods, signals, settings),
    /// `None` when it records nothing.
    fn record(&self) -> Option<ScalingRecord> {
        None
    }
}
