//! Command-line and environment configuration of the scaler (clap derive, every flag also an environment variable).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::error::ScalerError;

/// A gRPC KEDA external scaler for the lab's consumer signals.
#[derive(Debug, Clone, Parser)]
#[command(name = "scaler", version, about)]
pub struct Config {
    /// Address to listen on (gRPC and HTTP).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// gRPC port (KEDA's `scalerAddress`); 0 picks a free port.
    #[arg(long, env = "GRPC_PORT", default_value_t = 6000)]
    pub grpc_port: u16,
    /// HTTP port for /metrics, /health, /ready and /explain; 0 picks a free port.
    #[arg(long, env = "HTTP_PORT", default_value_t = 6001)]
    pub http_port: u16,
    /// Prometheus base URL used by triggers that give neither `serverAddress` nor `targets` (http or https).
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// PEM bundle of CA certificates trusted for https sources, in addition to the system's roots.
    #[arg(long, env = "CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Poll interval for every source; overrides the per-kind defaults below.
    #[arg(long, env = "POLL_INTERVAL", value_parser = humantime::parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Poll interval of direct (pod-scraping) sources.
    #[arg(long, env = "DIRECT_POLL_INTERVAL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub direct_poll_interval: Duration,
    /// Poll interval of Prometheus sources.
    #[arg(long, env = "PROMETHEUS_POLL_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub prometheus_poll_interval: Duration,
    /// Poll interval of Kafka sources (`kafka` triggers: one offset read per bootstrapServers, group and topic).
    #[arg(long, env = "KAFKA_POLL_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub kafka_poll_interval: Duration,
    /// How old a cached value may be before GetMetrics/IsActive answer UNAVAILABLE (default: 3 poll intervals of its
    /// source).
    #[arg(long, env = "MAX_STALENESS", value_parser = humantime::parse_duration)]
    pub max_staleness: Option<Duration>,
    /// Time limit of one poll request (a Prometheus query or one pod scrape).
    #[arg(long, env = "SOURCE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "2s")]
    pub source_timeout: Duration,
    /// Hysteresis: an active trigger turns inactive only after this many consecutive polls at or below its
    /// activationTarget.
    #[arg(long, env = "DEACTIVATE_AFTER_POLLS", default_value_t = 3)]
    pub deactivate_after_polls: u32,
    /// Triggers no RPC asked about for this long (and with no open stream) are forgotten.
    #[arg(long, env = "TRIGGER_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10m")]
    pub trigger_idle_timeout: Duration,
    /// Most triggers remembered at once (RESOURCE_EXHAUSTED beyond).
    #[arg(long, env = "MAX_TRIGGERS", default_value_t = 10_000)]
    pub max_triggers: usize,
    /// How long shutdown waits for in-flight RPCs and streams before giving up.
    #[arg(long, env = "SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults, as if no flag or variable was given (for tests and embedding).
    pub fn defaults() -> Config {
        Config::parse_from(["scaler"])
    }

    /// The effective poll interval of a direct source.
    pub fn direct_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(self.direct_poll_interval)
    }

    /// The effective poll interval of a Prometheus source.
    pub fn prometheus_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(self.prometheus_poll_interval)
    }

    /// The effective poll interval of a Kafka source.
    pub fn kafka_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(self.kafka_poll_interval)
    }

    /// The staleness bound for a source polled every `interval`.
    pub fn staleness_for(&self, interval: Duration) -> Duration {
        self.max_staleness.unwrap_or(interval * 3)
    }

    /// Checks values clap cannot: ranges and the Prometheus URL.
    pub fn validate(&self) -> Result<(), ScalerError> {
        let bad = |field: &str, value: String, allowed: &str| {
            Err(ScalerError::Config(format!(
                "{field} = {value} is invalid; allowed: {allowed}"
            )))
        };
        for (field, value) in [
            ("--direct-poll-interval", self.direct_interval()),
            ("--prometheus-poll-interval", self.prometheus_interval()),
            ("--kafka-poll-interval", self.kafka_interval()),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                return bad(
                    field,
                    humantime::format_duration(value).to_string(),
                    "100ms to 1h",
                );
            }
        }
        if let Some(staleness) = self.max_staleness
            && staleness < Duration::from_millis(100)
        {
            return bad(
                "--max-staleness",
                humantime::format_duration(staleness).to_string(),
                "at least 100ms",
            );
        }
        if self.source_timeout < Duration::from_millis(10)
            || self.source_timeout > Duration::from_secs(300)
        {
            return bad(
                "--source-timeout",
                humantime::format_duration(self.source_timeout).to_string(),
                "10ms to 5m",
            );
        }
        if self.deactivate_after_polls == 0 || self.deactivate_after_polls > 1000 {
            return bad(
                "--deactivate-after-polls",
                self.deactivate_after_polls.to_string(),
                "1 to 1000",
            );
        }
        if self.max_triggers == 0 {
            return bad("--max-triggers", "0".into(), "at least 1");
        }
        if let Some(path) = &self.ca_file
            && let Err(error) = crate::client::read_ca_file(path)
        {
            return bad(
                "--ca-file",
                path.display().to_string(),
                &format!("a readable PEM file of CA certificates ({error})"),
            );
        }
        if let Some(url) = &self.prometheus_url {
            let parsed = reqwest::Url::parse(url);
            let ok = parsed
                .as_ref()
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .unwrap_or(false);
            if !ok {
                return bad(
                    "--prometheus-url",
                    url.clone(),
                    "an http(s) URL, e.g. http://prometheus:9090",
                );
            }
        }
        Ok(())
    }
}
