//! The autoscaling lab's load generator as a library: named profiles, an open-model engine with honest latency, a
//! dynamic target set, replica monitoring, reports, thresholds and the CLI that `main.rs` runs.

pub mod app;
pub mod cli;
pub mod client;
pub mod engine;
pub mod exit;
pub mod metrics;
pub mod monitor;
pub mod profile;
pub mod report;
pub mod stats;
pub mod targets;
pub mod threshold;
pub mod trace;

pub use cli::Cli;
pub use engine::{ArrivalMode, EngineError, RunOptions, Split, run_load};
pub use monitor::{MonitorError, ReplicaSnapshot, ReplicaSource};
pub use profile::{Profile, RequestSpec, Stage};
pub use report::Report;
pub use stats::IntervalStats;
pub use targets::TargetSet;
