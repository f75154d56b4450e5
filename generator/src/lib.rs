//! The `generator` binary's library: its commands (`run`, `wait`, `produce`, `verify`) and the command line, wired
//! from the load core (`load`), the replica sources (`monitor`, here with the Kubernetes API), the Kafka load
//! (`kafka-load`) and the cluster's chaos executors (`chaos`, through the Kubernetes API). `main.rs` runs them.

pub mod app;
pub mod chaos;
pub mod cli;

pub use kafka_load as kafka;
pub use monitor;

// The load core's modules under their old paths, for the commands here and the integration tests.
pub use load::{
    chart, client, engine, exit, metrics, model, profile, report, stats, targets, threshold, trace,
};

pub use cli::Cli;
pub use engine::{EngineError, RunData, RunOptions, run_load};
pub use load::monitor::{MonitorError, ReplicaSource};
pub use model::{ArrivalMode, Outcome, ReplicaSnapshot, Split, TimelinePoint};
pub use profile::{Profile, RequestSpec, Stage};
pub use report::Report;
pub use stats::IntervalStats;
pub use targets::TargetSet;
