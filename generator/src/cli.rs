//! Command line: `run` (also the default, so the seed's `generator --url=... --test=heavy --monitor --cleanup`
//! works), `wait`, `profiles`, and Kafka's `produce` and `verify` (flags in [`crate::kafka`]). Every flag has an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write e.g. 30s, 5m, 250ms"))
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{v} must be a finite number > 0"));
    }
    Ok(v)
}

fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} must be between 0 and 1"));
    }
    Ok(v)
}

/// `--rate`: requests per second, or `max` for closed-loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateArg {
    PerSecond(f64),
    Max,
}

fn rate(s: &str) -> Result<RateArg, String> {
    if s.trim().eq_ignore_ascii_case("max") {
        return Ok(RateArg::Max);
    }
    positive_f64(s)
        .map(RateArg::PerSecond)
        .map_err(|e| format!("{e}, or `max`"))
}

pub use load::output::OutputFormat;

/// The load generator of the autoscaling lab.
#[derive(Debug, Parser)]
#[command(
    name = "generator",
    version,
    about = "Load generator: named profiles, open-model arrival rates, latency without coordinated omission, \
             and a report of what the autoscaler did.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, the flags of `run` (the seed's form).
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// The command to execute: `run` when no subcommand was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(self.run))
    }
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a load profile (or an ad-hoc constant rate) against the target and report.
    Run(RunArgs),
    /// Wait until the target's readiness endpoint answers 200 (for init containers).
    Wait(WaitArgs),
    /// List the built-in profiles, or print one as YAML.
    Profiles(ProfilesArgs),
    /// Produce Kafka load messages on an open-model schedule and report acks, rates and latency.
    Produce(crate::kafka::ProduceArgs),
    /// Read a Kafka test run back and report lost and duplicated messages per producer.
    Verify(crate::kafka::VerifyArgs),
}

/// Flags of `generator run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target base URL(s); several (comma separated or repeated) are used round-robin.
    #[arg(long, env = "TARGET_URL", value_delimiter = ',', required = true)]
    pub url: Vec<String>,

    /// A built-in profile (`generator profiles` lists them).
    #[arg(long, visible_alias = "profile", env = "TEST_PROFILE", conflicts_with_all = ["profile_file", "rate"])]
    pub test: Option<String>,

    /// A profile YAML file (the format `generator profiles show NAME` prints).
    #[arg(long, env = "PROFILE_FILE", conflicts_with = "rate")]
    pub profile_file: Option<PathBuf>,

    /// Ad-hoc run at a constant arrival rate (req/s), or `max` for closed-loop as fast as --connections allow.
    #[arg(long, env = "LOAD_RATE", value_parser = rate)]
    pub rate: Option<RateArg>,

    /// Run length: required with --rate; with a profile, cuts or stretches it.
    #[arg(long, env = "LOAD_DURATION", value_parser = duration)]
    pub duration: Option<Duration>,

    /// Ad-hoc request path.
    #[arg(long, env = "REQUEST_PATH", default_value = "/")]
    pub path: String,

    /// Ad-hoc request method (default GET, or POST with --body).
    #[arg(long, env = "REQUEST_METHOD")]
    pub method: Option<String>,

    /// Ad-hoc JSON request body.
    #[arg(long, env = "REQUEST_BODY")]
    pub body: Option<String>,

    /// Extra header on every request, `Name: value` (repeatable).
    #[arg(
        long = "header",
        short = 'H',
        env = "REQUEST_HEADERS",
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,

    /// Closed loop (--rate max): number of connections. Open model: same as --max-in-flight.
    #[arg(long, short = 'c', env = "LOAD_CONNECTIONS")]
    pub connections: Option<usize>,

    /// Cap on outstanding requests; requests due beyond it are dropped and counted, never sent late.
    #[arg(long, env = "LOAD_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,

    /// Per-request timeout, connect included.
    #[arg(long, env = "LOAD_REQUEST_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub timeout: Duration,

    /// Multiply every stage's rate (e.g. 0.5 on a small cluster).
    #[arg(long, env = "RATE_SCALE", value_parser = positive_f64, default_value_t = 1.0)]
    pub rate_scale: f64,

    /// Multiply every stage's duration (e.g. 0.1 for a ten times shorter run).
    #[arg(long, env = "LOAD_TIME_SCALE", value_parser = positive_f64, default_value_t = 1.0)]
    pub time_scale: f64,

    /// Follow the target's replicas (Kubernetes API, else the scaler's /explain, else Prometheus) and add the
    /// scaling report.
    #[arg(long, env = "LOAD_MONITOR")]
    pub monitor: bool,

    /// After the run: stop sustained CPU jobs on the consumer and wait until held memory is released.
    #[arg(long, env = "LOAD_CLEANUP")]
    pub cleanup: bool,

    /// Write the JSON report here (and the SVG chart next to it, `.svg`).
    #[arg(long, env = "LOAD_REPORT_FILE")]
    pub report: Option<PathBuf>,

    /// Pass/fail rule, e.g. `p95<500ms`, `errors<1%`, `dropped<0.1%`, `time_to_scale<60s` (repeatable).
    #[arg(long = "threshold", env = "LOAD_THRESHOLDS", value_delimiter = ',')]
    pub thresholds: Vec<String>,

    /// Service level objective the scaling report judges by, e.g. `p95<500ms,errors<1%` (docs/scaling-report.md).
    /// Without it, the latency and error `--threshold`s with `<`/`<=` make the SLO.
    #[arg(long, env = "SLO")]
    pub slo: Option<String>,

    /// Progress format.
    #[arg(long, env = "LOAD_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// No progress lines (the summary and verdict still print).
    #[arg(long, short = 'q', env = "LOAD_QUIET")]
    pub quiet: bool,

    /// Progress interval.
    #[arg(long, env = "LOAD_PROGRESS_INTERVAL", value_parser = duration, default_value = "1s")]
    pub interval: Duration,

    /// Before starting, wait this long for the target's readiness path (default 60s with a profile, 0 ad hoc).
    #[arg(long, env = "LOAD_WAIT_READY", value_parser = duration)]
    pub wait_ready: Option<Duration>,

    /// Readiness path used by --wait-ready.
    #[arg(long, env = "READY_PATH", default_value = contract::routes::READY)]
    pub ready_path: String,

    /// Recycle a keep-alive connection after this age (default 5s with a profile, off ad hoc; 0 = off).
    #[arg(long, env = "CONN_MAX_AGE", value_parser = duration)]
    pub conn_max_age: Option<Duration>,

    /// Recycle a keep-alive connection after this many requests (default 500 with a profile, off ad hoc; 0 = off).
    #[arg(long, env = "CONN_MAX_REQUESTS")]
    pub conn_max_requests: Option<u64>,

    /// Generators running this load together (an Indexed Job's parallelism); each sends 1/N.
    #[arg(long, env = "LOAD_PODS", default_value_t = 1)]
    pub pods: u32,

    /// This generator's index among --pods (Kubernetes sets JOB_COMPLETION_INDEX).
    #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
    pub pod_index: u32,

    /// Address for the generator's own /metrics.
    #[arg(long, env = "METRICS_HOST", default_value = "0.0.0.0")]
    pub metrics_host: String,

    /// Port for /metrics (0 = ephemeral).
    #[arg(long, env = "METRICS_PORT", default_value_t = 9464)]
    pub metrics_port: u16,

    /// Do not serve /metrics.
    #[arg(long, env = "LOAD_NO_METRICS")]
    pub no_metrics: bool,

    /// Share of requests carrying a W3C traceparent (spans are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set).
    #[arg(long, env = "TRACE_SAMPLE", value_parser = fraction, default_value_t = 0.01)]
    pub trace_sample: f64,

    /// Bearer token for the consumer's /load endpoints.
    #[arg(long, env = "LOAD_TOKEN", hide_env_values = true)]
    pub load_token: Option<String>,

    /// After SIGTERM/SIGINT, how long in-flight requests may still finish.
    #[arg(long, env = "LOAD_DRAIN_TIMEOUT", value_parser = duration, default_value = "5s")]
    pub drain_timeout: Duration,

    /// Where the one-line verdict goes for `kubectl describe` (written only when the file exists).
    #[arg(long, env = "TERMINATION_LOG", default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,

    /// A cluster fault during the load, in a profile `chaos:` entry's fields: `at=20s,action=evict-pod,target=pod`
    /// (actions: delete-pod, evict-pod, cordon-node, drain-node, partition-pod, scaler-to-zero). Repeatable; `;`
    /// separates several in the env. Carried out through the Kubernetes API (--kube-api-url, --kubeconfig, else
    /// in-cluster) on the consumer (--namespace, --deployment).
    #[arg(long = "chaos", env = "LOAD_CHAOS", value_delimiter = ';')]
    pub chaos: Vec<String>,

    /// What the faults may cost, e.g. `recovery<30s,lost<0.1%` (profile times); a breach exits 1. Wins over the
    /// profile's `chaos_thresholds`.
    #[arg(long, env = "LOAD_CHAOS_THRESHOLD")]
    pub chaos_threshold: Option<String>,

    /// The scaler Deployment `scaler-to-zero` scales (in --namespace).
    #[arg(long, env = "CHAOS_SCALER_DEPLOYMENT", default_value = "scaler")]
    pub chaos_scaler: String,

    /// The consumer pods' label selector (default: the consumer Deployment's spec.selector, read from the API).
    #[arg(long, env = "CHAOS_SELECTOR")]
    pub chaos_selector: Option<String>,

    #[command(flatten)]
    pub monitor_opts: MonitorArgs,
}

/// Where `--monitor` looks.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Kubernetes API URL (no auth), overriding in-cluster config and kubeconfig, e.g. `kubectl proxy`'s.
    #[arg(long, env = "KUBE_API_URL")]
    pub kube_api_url: Option<String>,

    /// A kubeconfig file (default: in-cluster service account, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, env = "KUBECONFIG_FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace of the target (default: this pod's namespace, else `default`).
    #[arg(long, env = "TARGET_NAMESPACE")]
    pub namespace: Option<String>,

    /// The target Deployment.
    #[arg(long, env = "TARGET_DEPLOYMENT", default_value = "consumer")]
    pub deployment: String,

    /// The ScaledObject (default: the Deployment's name).
    #[arg(long, env = "TARGET_SCALEDOBJECT")]
    pub scaled_object: Option<String>,

    /// The HPA (default: `keda-hpa-<scaledobject>`, as KEDA names it).
    #[arg(long, env = "TARGET_HPA")]
    pub hpa: Option<String>,

    /// The scaler's HTTP base URL, used when the Kubernetes API is not reachable (`/explain`).
    #[arg(long, env = "SCALER_URL")]
    pub scaler_url: Option<String>,

    /// Prometheus base URL, the last fallback (kube-state-metrics series).
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,

    /// PromQL for the target's CPU seconds over the run (`{range}` is replaced by its length), for the cost per
    /// request; needs --prometheus-url. Default: process_cpu_seconds_total of the Deployment's pods.
    #[arg(long, env = "COST_QUERY")]
    pub cost_query: Option<String>,

    /// How often replicas are observed.
    #[arg(long, env = "MONITOR_INTERVAL", value_parser = duration, default_value = "2s")]
    pub monitor_interval: Duration,

    /// Keep observing this long after the load ends, to measure the scale-down.
    #[arg(long, env = "WATCH_AFTER", value_parser = duration, default_value = "0s")]
    pub watch_after: Duration,
}

/// Flags of `generator wait`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Target base URL.
    #[arg(long, env = "TARGET_URL")]
    pub url: String,
    /// Give up after this long.
    #[arg(long, env = "WAIT_TIMEOUT", value_parser = duration, default_value = "300s")]
    pub timeout: Duration,
    /// Readiness path.
    #[arg(long, env = "READY_PATH", default_value = contract::routes::READY)]
    pub ready_path: String,
    /// Time between attempts.
    #[arg(long, env = "WAIT_INTERVAL", value_parser = duration, default_value = "1s")]
    pub interval: Duration,
}

/// Flags of `generator profiles`.
#[derive(Debug, Clone, Args)]
pub struct ProfilesArgs {
    #[command(subcommand)]
    pub command: Option<ProfilesCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProfilesCommand {
    /// Print a built-in profile as YAML (the format --profile-file reads).
    Show {
        /// Profile name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_form_is_run() {
        let cli = Cli::try_parse_from([
            "generator",
            "--url=http://consumer:8080",
            "--test=heavy",
            "--monitor",
            "--cleanup",
        ])
        .unwrap();
        let Command::Run(r) = cli.into_command() else {
            panic!("not run")
        };
        assert_eq!(r.url, ["http://consumer:8080"]);
        assert_eq!(r.test.as_deref(), Some("heavy"));
        assert!(r.monitor && r.cleanup);
    }

    #[test]
    fn subcommands() {
        let cli = Cli::try_parse_from([
            "generator",
            "wait",
            "--url",
            "http://c:8080",
            "--timeout",
            "300s",
        ])
        .unwrap();
        let Command::Wait(w) = cli.into_command() else {
            panic!()
        };
        assert_eq!(w.timeout, Duration::from_secs(300));
        let cli = Cli::try_parse_from(["generator", "profiles", "show", "demo"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Profiles(_)));
        let cli = Cli::try_parse_from([
            "generator",
            "run",
            "--url",
            "http://x",
            "--rate",
            "max",
            "--duration",
            "5s",
            "-c",
            "8",
        ])
        .unwrap();
        let Command::Run(r) = cli.into_command() else {
            panic!()
        };
        assert_eq!(r.rate, Some(RateArg::Max));
        assert_eq!(r.connections, Some(8));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            vec![
                "generator",
                "run",
                "--url",
                "http://x",
                "--rate",
                "-5",
                "--duration",
                "1s",
            ],
            vec![
                "generator",
                "run",
                "--url",
                "http://x",
                "--rate",
                "5",
                "--duration",
                "soon",
            ],
            vec![
                "generator",
                "run",
                "--url",
                "http://x",
                "--test",
                "heavy",
                "--rate",
                "5",
            ],
            vec!["generator", "run", "--test", "heavy"],
            vec![
                "generator",
                "run",
                "--url",
                "http://x",
                "--trace-sample",
                "2",
            ],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
