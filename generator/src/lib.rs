//! The autoscaling lab's load generator as a library: named profiles, an open-model engine with honest latency, a
//! dynamic target set, replica monitoring, reports, thresholds, the Kafka producer and verifier, and the CLI that
//! `main.rs` runs.

pub mod app;
pub mod chaos;
pub mod chart;
pub mod cli;
pub mod client;
pub mod engine;
pub mod exit;
pub mod kafka;
pub mod kube_api;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod profile;
pub mod report;
pub mod stats;
pub mod targets;
pub mod threshold;
pub mod trace;

pub use cli::Cli;
pub use engine::{EngineError, RunData, RunOptions, run_load};
pub use model::{ArrivalMode, Outcome, ReplicaSnapshot, Split, TimelinePoint};
pub use monitor::{MonitorError, ReplicaSource};
pub use profile::{Profile, RequestSpec, Stage};
pub use report::Report;
pub use stats::IntervalStats;
pub use targets::TargetSet;
