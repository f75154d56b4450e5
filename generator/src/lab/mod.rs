//! `generator lab`: the cluster-free autoscaling lab. Spawns the real scaler and consumer replicas on
//! 127.0.0.1, drives a load profile at the ready replicas, and plays KEDA + HPA with the `autoscaler`
//! crate's controller, starting and stopping consumer processes as it decides.

use std::path::PathBuf;

/// Options of `generator lab`.
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
    /// Do not spawn anything: use the consumer(s) and scaler given by --consumer-url / --scaler-addr.
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
    #[arg(long = "consumer-arg", env = "LAB_CONSUMER_ARGS", value_delimiter = ' ', allow_hyphen_values = true)]
    pub consumer_args: Vec<String>,
    /// Override maxReplicaCount (this machine has few cores; the override is shown on screen).
    #[arg(long, env = "LAB_MAX_REPLICAS")]
    pub max_replicas: Option<u32>,
    /// After the profile ends, keep the controller running (no load) until replicas return to the
    /// minimum, for at most this long (default: what the scale-down rules need, plus a margin).
    #[arg(long, env = "LAB_SETTLE", value_parser = humantime::parse_duration)]
    pub settle: Option<std::time::Duration>,
    /// Directory for the report (report.json, report.txt, chart.svg, decisions.jsonl).
    #[arg(long, env = "LAB_OUT", default_value = "lab-out")]
    pub out: PathBuf,
    /// Live view: `auto` (redraw on a terminal, one line per second otherwise), `tty`, `plain`, `off`.
    #[arg(long, env = "LAB_LIVE", default_value = "auto")]
    pub live: String,
}

/// Why the lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Spec(#[from] autoscaler::SpecError),
    #[error("{0}")]
    Usage(String),
}

/// Run the lab; returns the process exit code.
pub async fn run(args: LabArgs) -> Result<i32, LabError> {
    Err(LabError::Usage(format!(
        "generator lab is being wired up (args: {args:?})"
    )))
}
