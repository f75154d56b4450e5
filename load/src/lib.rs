//! The load core of the autoscaling lab: named profiles, an open-model engine with honest latency, a dynamic target
//! set, statistics, thresholds, the report (text, JSON, SVG) and the chaos figures it carries. It links neither a
//! Kubernetes nor a Kafka client: replica sources come in through [`monitor::ReplicaSource`], from the `monitor`
//! crate or the lab.

pub mod chaos;
pub mod chart;
pub mod client;
pub mod engine;
pub mod error;
pub mod exit;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod output;
pub mod profile;
pub mod report;
pub mod stats;
pub mod targets;
pub mod threshold;
pub mod trace;

pub use engine::{EngineError, RunData, RunOptions, run_load};
pub use error::AppError;
pub use model::{ArrivalMode, Outcome, ReplicaSnapshot, Split, TimelinePoint};
pub use monitor::{MonitorError, ReplicaSource};
pub use profile::{Profile, RequestSpec, Stage};
pub use report::Report;
pub use stats::IntervalStats;
pub use targets::TargetSet;
