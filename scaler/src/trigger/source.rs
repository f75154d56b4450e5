//! Where a trigger's values come from: a Prometheus URL (`serverAddress`, or the server's `--prometheus-url`), or the
//! pods themselves (`targets`: a headless Service name or a list of `/metrics` URLs). `http` and `https` are both
//! accepted; https is verified against the system roots plus `--ca-file` (see `crate::client`). The `kafka` trigger's
//! source is a Kafka cluster and consumer group (parsed in `super::kafka`).

use std::fmt;

use super::TriggerError;

/// Port scraped when `targets` names a Service without a port.
pub const DEFAULT_DIRECT_PORT: u16 = 8080;

/// Where a trigger's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceSpec {
    /// Prometheus HTTP API at this base URL (no trailing slash).
    Prometheus { url: String },
    /// Scrape the pods' `/metrics` directly.
    Direct { targets: DirectTargets },
    /// No `serverAddress` nor `targets`: the server's `--prometheus-url`, if it has one.
    DefaultPrometheus,
    /// A Kafka cluster's offsets for one consumer group: one topic, or (None) every topic the group has offsets for.
    Kafka {
        /// Comma list of host:port, as given (trimmed).
        bootstrap_servers: String,
        consumer_group: String,
        topic: Option<String>,
    },
}

/// The pods a direct source scrapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DirectTargets {
    /// A DNS name (a headless Service) whose every address is scraped at `http://IP:port/metrics`.
    Dns { host: String, port: u16 },
    /// Fixed URLs of `/metrics` endpoints.
    Urls(Vec<String>),
}

impl SourceSpec {
    /// The stable identity of the source, used as the `source` metric label and to share one poller.
    pub fn id(&self) -> String {
        match self {
            SourceSpec::Prometheus { url } => format!("prometheus:{url}"),
            SourceSpec::Direct { targets } => format!("direct:{targets}"),
            SourceSpec::DefaultPrometheus => "prometheus:default".to_string(),
            SourceSpec::Kafka {
                bootstrap_servers,
                consumer_group,
                topic,
            } => format!(
                "kafka:{bootstrap_servers}/{consumer_group}/{}",
                topic.as_deref().unwrap_or("*")
            ),
        }
    }
}

impl fmt::Display for DirectTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectTargets::Dns { host, port } => write!(f, "{host}:{port}"),
            DirectTargets::Urls(urls) => write!(f, "{}", urls.join(",")),
        }
    }
}

pub(crate) fn parse_http_url(key: &str, raw: &str) -> Result<String, TriggerError> {
    const ALLOWED: &str = "an http:// or https:// URL, e.g. http://prometheus.monitoring:9090";
    let url = reqwest::Url::parse(raw)
        .map_err(|e| TriggerError::invalid(key, raw, format!("not a URL: {e}"), ALLOWED))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TriggerError::invalid(
            key,
            raw,
            "not an http(s) URL with a host",
            ALLOWED,
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

pub(crate) fn parse_targets(raw: &str) -> Result<DirectTargets, TriggerError> {
    const ALLOWED: &str = "a headless Service name with optional :port (e.g. consumer-headless.autoscaling-lab.svc:8080) \
                           or a comma list of http:// URLs of /metrics endpoints";
    if raw.is_empty() {
        return Err(TriggerError::invalid("targets", raw, "empty", ALLOWED));
    }
    if raw.contains("://") {
        let mut urls = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut url = reqwest::Url::parse(part).map_err(|e| {
                TriggerError::invalid("targets", part, format!("not a URL: {e}"), ALLOWED)
            })?;
            if url.scheme() != "http" && url.scheme() != "https" || url.host_str().is_none() {
                return Err(TriggerError::invalid(
                    "targets",
                    part,
                    "not an http(s) URL with a host",
                    ALLOWED,
                ));
            }
            if url.path() == "/" || url.path().is_empty() {
                url.set_path("/metrics");
            }
            urls.push(url.to_string());
        }
        if urls.is_empty() {
            return Err(TriggerError::invalid(
                "targets",
                raw,
                "no URL given",
                ALLOWED,
            ));
        }
        urls.sort();
        urls.dedup();
        return Ok(DirectTargets::Urls(urls));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                TriggerError::invalid("targets", raw, "the port is not a number 1-65535", ALLOWED)
            })?;
            (host, port)
        }
        None => (raw, DEFAULT_DIRECT_PORT),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_host {
        return Err(TriggerError::invalid(
            "targets",
            raw,
            "not a DNS name",
            ALLOWED,
        ));
    }
    Ok(DirectTargets::Dns {
        host: host.to_ascii_lowercase(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_targets_accept_urls_and_service_names() {
        assert_eq!(
            parse_targets("http://127.0.0.1:1/, http://127.0.0.1:2/custom").unwrap(),
            DirectTargets::Urls(vec![
                "http://127.0.0.1:1/metrics".into(),
                "http://127.0.0.1:2/custom".into()
            ])
        );
        assert_eq!(
            parse_targets("Consumer-Headless:9000").unwrap(),
            DirectTargets::Dns {
                host: "consumer-headless".into(),
                port: 9000
            }
        );
    }
}
