//! `lab`: the cluster-free autoscaling lab. Spawns the real scaler and consumer replicas on 127.0.0.1, drives a load
//! profile at the ready replicas, and plays KEDA + HPA with the `autoscaler` crate's controller, starting and stopping
//! consumer processes as it decides.
//!
//! Modules: [`setup`] resolves the ScaledObject and the profile, [`run`] supervises a run (children, signals, the one
//! stop of every child), [`control`] is the KEDA poll + HPA step loop, [`keda`] the gRPC client of the external
//! scaler, [`replicas`] the Deployment stand-in, [`process`] how children are spawned (`procs`), [`view`] the screen,
//! [`chart`] the triggers chart, [`chaos`] faults injected during the load and their recovery figures, [`console`]
//! the web console, [`observe`] a run's live hooks, [`kafka`] the Kafka scenario, [`scaling`] the scaling report's
//! input (the `timeline` crate's analysis), `signals`
//! the interrupts.

pub mod chaos;
pub mod chart;
mod children;
pub mod console;
pub mod control;
pub mod kafka;
pub mod keda;
pub mod observe;
pub mod process;
pub mod replicas;
pub mod run;
pub mod scaling;
pub mod setup;
pub(crate) mod signals;
mod start;
pub mod view;

use std::path::PathBuf;
use std::time::Duration;

pub use run::{
    LiveInterval, RunHooks, RunObserver, run, run_hooked, run_observed, run_signalled,
    run_supervised, run_with,
};
use view::DecisionRecord;

/// Options of `lab`.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Load profile: a built-in name (`generator profiles`) or a profile YAML file.
    #[arg(long = "test", env = "LAB_TEST", default_value = "demo")]
    pub test: String,
    /// The KEDA ScaledObject to obey (default: manifests/components/keda/scaledobject.yaml, or the copy
    /// built into the binary when that file is not found).
    #[arg(long, env = "LAB_SCALEDOBJECT")]
    pub scaledobject: Option<PathBuf>,
    /// Multiply every duration of the ScaledObject (polling, cooldowns, stabilization windows, policy
    /// periods, trigger windows) and of the profile by this factor. 1 = real KEDA/HPA timing.
    #[arg(long, env = "LAB_TIME_SCALE", default_value_t = 0.5)]
    pub time_scale: f64,
    /// Do not spawn anything: load the consumer URL(s) and ask the scaler given; the controller's
    /// decisions are shown (simulated replica count), not applied.
    #[arg(long, env = "LAB_NO_SPAWN", requires_all = ["consumer_url", "scaler_addr"])]
    pub no_spawn: bool,
    /// With --no-spawn: consumer base URL(s) to load (comma separated or repeated).
    #[arg(long, env = "LAB_CONSUMER_URL", value_delimiter = ',')]
    pub consumer_url: Vec<String>,
    /// With --no-spawn: the scaler's gRPC address (host:port or http://host:port).
    #[arg(long, env = "LAB_SCALER_ADDR")]
    pub scaler_addr: Option<String>,
    /// Consumer binary (default: `consumer` beside this executable).
    #[arg(long, env = "LAB_CONSUMER_BIN")]
    pub consumer_bin: Option<PathBuf>,
    /// Scaler binary (default: `scaler` beside this executable).
    #[arg(long, env = "LAB_SCALER_BIN")]
    pub scaler_bin: Option<PathBuf>,
    /// Extra argument for every consumer replica (repeatable), e.g. `--consumer-arg=--executors=4`.
    #[arg(long = "consumer-arg", allow_hyphen_values = true)]
    pub consumer_args: Vec<String>,
    /// Override maxReplicaCount (this machine has few cores; the override is shown on screen).
    #[arg(long, env = "LAB_MAX_REPLICAS", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_replicas: Option<u32>,
    /// After the profile ends, keep the controller running without load so the scale-down is seen, until
    /// replicas are back at rest or at most this long (default: what the ScaledObject's scale-down rules
    /// need, plus a margin).
    #[arg(long, env = "LAB_SETTLE", value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,
    /// Directory for the results (report.json, report.svg, triggers.svg, decisions.jsonl, summary.txt).
    #[arg(long, env = "LAB_OUT", default_value = "reports/lab")]
    pub out: PathBuf,
    /// The SLO the scaling report judges each interval by, e.g. `p95<500ms,errors<1%` (percentiles p50, p90, p95,
    /// p99, p99.9 in ms or s; errors in %). Default: `p95<500ms,errors<1%`.
    #[arg(long, env = "LAB_SLO")]
    pub slo: Option<String>,
    /// Live view: `auto` (redraw on a terminal, one line per second otherwise), `tty`, `plain`, `off`.
    #[arg(long, env = "LAB_LIVE", default_value = "auto", value_parser = ["auto", "tty", "plain", "off"])]
    pub live: String,
    /// `http`: load the consumer's HTTP routes (the default). `kafka`: a broker (started locally unless
    /// --kafka-brokers), consumer replicas in Kafka mode as one group, a producer, lag-driven scaling
    /// (default ScaledObject: manifests/components/keda/scaledobject-kafka.yaml).
    #[arg(long, env = "LAB_SCENARIO", default_value = "http", value_parser = ["http", "kafka"])]
    pub scenario: String,
    /// A fault to inject during the load (repeatable; `;`-separated in the environment), with the fields of a
    /// profile's `chaos:` entries: `at=20s,action=kill|terminate|freeze|kill-scaler|freeze-scaler|stop-broker,
    /// target=replica|replica-N|scaler|broker,duration=10s`. Added to the profile's list; time-scaled like it.
    /// `stop-broker` (--scenario kafka only): the broker the lab started is stopped for `duration`, then restarted.
    #[arg(long = "chaos", env = "LAB_CHAOS", value_delimiter = ';')]
    pub chaos: Vec<String>,
    /// Thresholds on every fault's recovery figures, e.g. `recovery<30s,lost<0.1%` (also `replacement<`,
    /// `serving<`, `failed<`, `timeouts<`, `dropped<`, `lost<N`); a breach exits 1. Durations are time-scaled.
    #[arg(long, env = "LAB_CHAOS_THRESHOLD")]
    pub chaos_threshold: Option<String>,
    /// A killed replica's or scaler's restart back-off when the fault gives no duration (before --time-scale):
    /// the kubelet's first crash back-off.
    #[arg(long, env = "LAB_RESTART_BACKOFF", value_parser = humantime::parse_duration, default_value = "10s")]
    pub restart_backoff: Duration,
    /// Kafka scenario: use this broker (host:port list) instead of starting one with scripts/kafka/broker.sh.
    #[arg(long, env = "LAB_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka scenario: the broker script (default: scripts/kafka/broker.sh in the repository).
    #[arg(long, env = "LAB_KAFKA_SCRIPT")]
    pub kafka_script: Option<PathBuf>,
    /// Kafka scenario: messages per second sent when --test is not a `kafka-*` profile.
    #[arg(long, env = "LAB_KAFKA_RATE", default_value_t = 200.0)]
    pub kafka_rate: f64,
    /// Kafka scenario: how long that rate is sent (before --time-scale).
    #[arg(long, env = "LAB_KAFKA_DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub kafka_duration: Duration,
    /// Kafka scenario: each replica's simulated I/O per message (`--kafka-work io --kafka-work-ms`).
    #[arg(long, env = "LAB_KAFKA_WORK_MS", default_value_t = 20)]
    pub kafka_work_ms: u64,
}

/// Why the lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("ScaledObject {path}: {source}")]
    Spec {
        path: String,
        source: autoscaler::SpecError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("starting {what}: {source}")]
    Start { what: String, source: procs::Error },
    #[error("{0}")]
    NotReady(String),
    #[error("load engine: {0}")]
    Engine(#[from] load::engine::EngineError),
    #[error("{0}")]
    Runtime(String),
    #[error("interrupted before the load started; every child was stopped")]
    Interrupted,
    #[error("writing the report to {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl LabError {
    /// The exit code of this failure (docs/exit-codes.md): usage for bad input (a missing binary included), not-ready
    /// for a child that never came up, interrupted, and runtime error for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            LabError::Spec { .. } | LabError::Usage(_) => contract::exit::USAGE,
            LabError::Start { .. } | LabError::NotReady(_) => contract::exit::TARGET_NOT_READY,
            LabError::Interrupted => contract::exit::INTERRUPTED,
            LabError::Engine(_) | LabError::Io { .. } | LabError::Runtime(_) => {
                contract::exit::RUNTIME_ERROR
            }
        }
    }
}

/// What a finished lab run produced (also returned to tests).
#[derive(Debug)]
pub struct LabOutcome {
    pub exit_code: i32,
    pub report: load::report::Report,
    pub decisions: Vec<DecisionRecord>,
    /// Every child pid the lab spawned.
    pub pids: Vec<u32>,
    pub out_dir: PathBuf,
    /// What the scaling report analysed (times since the load start).
    pub timeline: timeline::Timeline,
    /// When the load started, in seconds since the lab's epoch (the decision log's `t_s` clock).
    pub load_start_s: f64,
}
