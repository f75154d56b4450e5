//! Flags of `generator produce` and `generator verify`. Every flag has an environment variable; clap rejects a bad
//! value with the flag, the value and the allowed values (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use load::output::OutputFormat;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write e.g. 30s, 5m, 250ms"))
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v <= 0.0 || v > 1_000_000.0 {
        return Err(format!("{v} must be a number in (0, 1000000] messages/s"));
    }
    Ok(v)
}

/// Largest `--payload-bytes`: Kafka's default `message.max.bytes` is about 1 MiB.
pub const MAX_PAYLOAD_BYTES: u64 = 1_048_576;

/// How each message's key is chosen (the key picks the partition, murmur2 as the Java client does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KeyStrategy {
    /// No key: the partitioner spreads messages at random.
    #[default]
    None,
    /// The message's sequence number.
    Sequence,
    /// A random 64-bit number.
    Random,
}

/// `acks`: how many replicas must have a message before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[default]
    All,
}

impl Acks {
    /// librdkafka's `acks` value.
    pub fn config_value(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's `compression.type` value.
    pub fn config_value(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Flags of `generator produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: String,

    /// Topic to produce to.
    #[arg(long, env = "KAFKA_TOPIC")]
    pub topic: String,

    /// A built-in Kafka profile (`generator profiles` lists them: kafka-light, kafka-medium, kafka-heavy, ...).
    #[arg(
        long,
        visible_alias = "profile",
        env = "TEST_PROFILE",
        conflicts_with = "rate"
    )]
    pub test: Option<String>,

    /// Ad-hoc constant send rate (messages/s); needs --count or --duration.
    #[arg(long, env = "LOAD_RATE", value_parser = positive_f64)]
    pub rate: Option<f64>,

    /// Messages to send in all (every pod's share together); with a profile, cuts it short.
    #[arg(long, env = "MESSAGE_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Run length with --rate (or stretches/cuts a profile).
    #[arg(long, env = "LOAD_DURATION", value_parser = duration)]
    pub duration: Option<Duration>,

    /// Size of each message's payload filler.
    #[arg(long, env = "PAYLOAD_BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(0..=MAX_PAYLOAD_BYTES))]
    pub payload_bytes: u64,

    /// How message keys are chosen.
    #[arg(long, env = "KEY_STRATEGY", value_enum, default_value_t = KeyStrategy::None)]
    pub key_strategy: KeyStrategy,

    /// Acknowledgements the broker waits for.
    #[arg(long, env = "KAFKA_ACKS", value_enum, default_value_t = Acks::All)]
    pub acks: Acks,

    /// Batch compression.
    #[arg(long, env = "KAFKA_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Idempotent producer (`enable.idempotence`): a retry after a lost ack (a broker restart) never writes a message
    /// twice. Needs `--acks all`.
    #[arg(long, env = "KAFKA_IDEMPOTENT")]
    pub idempotent: bool,

    /// How long the producer waits to fill a batch (`linger.ms`).
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub linger_ms: u64,

    /// Largest batch in bytes (`batch.size`).
    #[arg(long, env = "KAFKA_BATCH_BYTES", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub batch_bytes: u64,

    /// How long a message may wait for its ack before it counts as failed (`message.timeout.ms`).
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub message_timeout: Duration,

    /// The test run id every producer of one run shares (default: a fresh one, printed); `verify` selects by it.
    #[arg(long, env = "TEST_RUN")]
    pub test_run: Option<String>,

    /// This producer's name in `metadata.producer` (default: the pod name / hostname; `generator-<index>` when
    /// split over several pods).
    #[arg(long, env = "PRODUCER_NAME")]
    pub producer: Option<String>,

    /// Write the JSON report here.
    #[arg(long, env = "LOAD_REPORT_FILE")]
    pub report: Option<PathBuf>,

    /// Pass/fail rule, e.g. `p99<50ms`, `errors<0.1%`, `rate>=950` (repeatable).
    #[arg(long = "threshold", env = "LOAD_THRESHOLDS", value_delimiter = ',')]
    pub thresholds: Vec<String>,

    /// Generators producing this load together (an Indexed Job's parallelism); each sends 1/N.
    #[arg(long, env = "LOAD_PODS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
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

    /// Progress format.
    #[arg(long, env = "LOAD_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// No progress lines (the summary and verdict still print).
    #[arg(long, short = 'q', env = "LOAD_QUIET")]
    pub quiet: bool,

    /// Progress interval.
    #[arg(long, env = "LOAD_PROGRESS_INTERVAL", value_parser = duration, default_value = "1s")]
    pub interval: Duration,
}

/// Flags of `generator verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: String,

    /// The topic the load went to.
    #[arg(long, env = "KAFKA_TOPIC")]
    pub topic: String,

    /// The test run to check.
    #[arg(long, env = "TEST_RUN")]
    pub test_run: String,

    /// Also check `<topic>.processed`: what the consumer's Kafka workers reported as processed.
    #[arg(long, env = "VERIFY_PROCESSED")]
    pub processed: bool,

    /// Give up reading after this long (what was read by then is reported).
    #[arg(long, env = "VERIFY_TIMEOUT", value_parser = duration, default_value = "60s")]
    pub timeout: Duration,

    /// With --processed: how long to wait for workers still processing what was delivered (the processed topic is
    /// read again each second); at most the --timeout. 0s: read it once (the workers have stopped). Default: the
    /// --timeout.
    #[arg(long, env = "VERIFY_PROCESSED_WAIT", value_parser = duration)]
    pub processed_wait: Option<Duration>,

    /// Output format.
    #[arg(long, env = "LOAD_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}
