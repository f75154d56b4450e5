//! Command-line and environment configuration of the consumer (`clap` derive, every flag with an env fallback),
//! plus the byte-size parser and the default memory-budget rule.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;

use crate::sys;

/// How the consumer is configured. Every flag also reads an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "consumer",
    version,
    about = "The autoscaling lab's target service"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// HTTP port (0 picks a free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Executor slots of this replica: how many jobs (async, or sync cpu/memory/io requests) run at once.
    #[arg(long, env = "EXECUTORS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub executors: u32,

    /// Bound on work waiting for an executor slot (async jobs plus waiting sync requests); beyond it, 429.
    #[arg(long = "queue-size", env = "QUEUE_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_size: u32,

    /// Bytes that `/load/memory` may hold at once, e.g. `536870912`, `512MiB`, `2Gi`, `1GB`.
    /// Default: 75 % of the cgroup memory limit when one is set, else 50 % of host memory.
    #[arg(long = "memory-budget", env = "MEMORY_BUDGET", value_parser = parse_byte_size)]
    pub memory_budget: Option<u64>,

    /// How long in-flight work may take to finish after SIGTERM/SIGINT (e.g. `25s`).
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// When set, `/load/*` and `/jobs/*` require `Authorization: Bearer <token>`.
    #[arg(long = "load-token", env = "LOAD_TOKEN", hide_env_values = true)]
    pub load_token: Option<String>,

    /// Name reported in `x-served-by` and `GET /` (Kubernetes sets HOSTNAME to the pod name).
    #[arg(long = "pod-name", env = "HOSTNAME")]
    pub pod_name: Option<String>,

    /// How long a sync request may wait for a free executor slot before it is answered 503.
    #[arg(long = "slot-wait-timeout", env = "SLOT_WAIT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub slot_wait_timeout: Duration,

    /// How long finished jobs stay visible at `GET /jobs/{id}`.
    #[arg(long = "job-retention", env = "JOB_RETENTION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub job_retention: Duration,

    /// At most this many finished jobs are kept (oldest forgotten first).
    #[arg(
        long = "max-retained-jobs",
        env = "MAX_RETAINED_JOBS",
        default_value_t = 10_000
    )]
    pub max_retained_jobs: usize,

    /// Bound on sustained-CPU worker threads running at once, over all sustained jobs.
    #[arg(long = "max-sustained-workers", env = "MAX_SUSTAINED_WORKERS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_sustained_workers: u32,

    /// Log format: `auto` (JSON lines unless stdout is a terminal), `json` or `text`.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "auto", value_parser = ["auto", "json", "text"])]
    pub log_format: String,

    /// Kafka mode: the bootstrap servers (`host:port,...`). When set, the consumer also joins `--kafka-group` on
    /// `--kafka-topic` and works through its messages (docs/consumer.md); HTTP stays up.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        requires = "kafka_topic"
    )]
    pub kafka_brokers: Option<String>,

    /// The topic to consume (reports go to `<topic>.processed`, which must exist). Required with `--kafka-brokers`.
    #[arg(long = "kafka-topic", env = "KAFKA_TOPIC", requires = "kafka_brokers", value_parser = parse_topic)]
    pub kafka_topic: Option<String>,

    /// The consumer group this replica joins.
    #[arg(long = "kafka-group", env = "KAFKA_GROUP", default_value = "consumer", value_parser = parse_topic)]
    pub kafka_group: String,

    /// The work done per Kafka message, through the same executor slots as `/load/*`.
    #[arg(long = "kafka-work", env = "KAFKA_WORK", value_enum, default_value_t = KafkaWork::Io)]
    pub kafka_work: KafkaWork,

    /// Milliseconds of work per message: I/O wait, CPU time or memory hold.
    #[arg(long = "kafka-work-ms", env = "KAFKA_WORK_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub kafka_work_ms: u64,

    /// How long the group waits for a silent member (a crashed replica) before handing its partitions to the others.
    /// Kafka's default is 45 s, which is how long a killed replica's partitions stall; the broker accepts
    /// 6000..=1800000 by default (`group.min/max.session.timeout.ms`). Heartbeats go every third of it.
    #[arg(long = "kafka-session-timeout-ms", env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 45_000, value_parser = clap::value_parser!(u64).range(1000..=1_800_000))]
    pub kafka_session_timeout_ms: u64,

    /// MiB held per message (`--kafka-work memory` only).
    #[arg(long = "kafka-work-mb", env = "KAFKA_WORK_MB", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub kafka_work_mb: u64,
}

/// The work a Kafka message gets (the `/load/*` kinds that take one item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaWork {
    Io,
    Cpu,
    Memory,
}

/// A topic or group name: non-empty, without spaces (Kafka's own check comes later and is less clear).
fn parse_topic(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(format!("`{text}` is not a Kafka topic or group name"));
    }
    Ok(name.to_owned())
}

impl Config {
    /// Parses flags from `args` (the first item is the program name) with environment fallbacks; for tests and
    /// embedding, e.g. `Config::from_args(["consumer", "--port", "0"])`.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(args)
    }

    /// The memory budget in force: the flag, or the default rule.
    pub fn effective_memory_budget(&self) -> u64 {
        self.memory_budget.unwrap_or_else(default_memory_budget)
    }

    /// The pod name in force: the flag/`HOSTNAME`, else the kernel host name, else `consumer`.
    pub fn effective_pod_name(&self) -> String {
        if let Some(name) = self.pod_name.as_deref().filter(|name| !name.is_empty()) {
            return name.to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "consumer".to_owned())
    }
}

/// 75 % of the cgroup memory limit when one is set, else 50 % of host memory (1 GiB if neither can be read).
pub fn default_memory_budget() -> u64 {
    if let Some(limit) = sys::cgroup_memory_limit() {
        return limit / 4 * 3;
    }
    sys::host_memory_bytes()
        .map(|total| total / 2)
        .unwrap_or(1 << 30)
}

/// Parses a byte size: a plain number of bytes, or a number with a unit. Binary units: `Ki`, `Mi`, `Gi`, `Ti`
/// (also `KiB`, `MiB`, ...); decimal units: `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`; `B` for bytes. Case-insensitive.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a byte size (expected e.g. 536870912, 512MiB, 2Gi, 1GB)"
        ));
    }
    let number: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a byte size (expected e.g. 536870912, 512MiB, 2Gi, 1GB)")
    })?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use B, K, M, G, T, Ki, Mi, Gi, Ti)"
            ));
        }
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range (at least 1 byte)"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!(parse_byte_size("536870912"), Ok(536_870_912));
        assert_eq!(parse_byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_byte_size("2Gi"), Ok(2 << 30));
        assert_eq!(parse_byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_byte_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_byte_size("64k"), Ok(64_000));
    }

    #[test]
    fn bad_byte_sizes_are_refused() {
        assert!(parse_byte_size("").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("12XB").is_err());
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("-5").is_err());
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = Config::from_args(["consumer", "--pod-name", "p"]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.executors, 4);
        assert_eq!(config.queue_size, 1000);
        assert_eq!(config.shutdown_grace, Duration::from_secs(25));
        assert!(config.effective_memory_budget() > 0);
        assert_eq!(config.effective_pod_name(), "p");
    }

    #[test]
    fn flags_are_validated() {
        assert!(Config::from_args(["consumer", "--executors", "0"]).is_err());
        assert!(Config::from_args(["consumer", "--memory-budget", "lots"]).is_err());
        assert!(Config::from_args(["consumer", "--shutdown-grace", "soon"]).is_err());
        let config = Config::from_args(["consumer", "--memory-budget", "64MiB"]).unwrap();
        assert_eq!(config.effective_memory_budget(), 64 << 20);
    }

    #[test]
    fn kafka_flags_are_validated() {
        let config = Config::from_args(["consumer"]).unwrap();
        assert!(config.kafka_brokers.is_none());
        assert_eq!(config.kafka_group, "consumer");
        assert_eq!(config.kafka_work, KafkaWork::Io);
        assert_eq!((config.kafka_work_ms, config.kafka_work_mb), (50, 1));
        let kafka = [
            "consumer",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--kafka-topic",
            "t",
        ];
        let config = Config::from_args(kafka.iter().chain(&["--kafka-work", "memory"])).unwrap();
        assert_eq!(config.kafka_work, KafkaWork::Memory);
        assert!(Config::from_args(["consumer", "--kafka-brokers", "127.0.0.1:9092"]).is_err());
        assert!(Config::from_args(["consumer", "--kafka-topic", "t"]).is_err());
        assert!(Config::from_args(kafka.iter().chain(&["--kafka-work", "disk"])).is_err());
        assert!(Config::from_args(kafka.iter().chain(&["--kafka-work-ms", "0"])).is_err());
        assert!(Config::from_args(kafka.iter().chain(&["--kafka-work-ms", "60001"])).is_err());
        assert!(Config::from_args(kafka.iter().chain(&["--kafka-work-mb", "513"])).is_err());
        assert!(Config::from_args(kafka.iter().chain(&["--kafka-group", " "])).is_err());
    }
}
