//! Trigger metadata: parses and validates the `metadata` map KEDA passes as `scalerMetadata`, and turns a valid trigger
//! into the PromQL (Prometheus source) or the sample filter (direct source) that measures it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Routes the consumer serves for probes and scraping; the default request triggers never count them.
pub const PROBE_ROUTES: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Port scraped when `targets` names a Service without a port.
pub const DEFAULT_DIRECT_PORT: u16 = 8080;

const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// Why a trigger's metadata was refused. Every variant names the key at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerError {
    #[error("unknown metadata key `{key}` for trigger `{trigger}`; allowed keys: {allowed}")]
    UnknownKey {
        key: String,
        trigger: String,
        allowed: String,
    },
    #[error("missing metadata key `{key}`: {hint}")]
    Missing { key: String, hint: String },
    #[error("metadata key `{key}` has invalid value {value:?}: {reason} (allowed: {allowed})")]
    Invalid {
        key: String,
        value: String,
        reason: String,
        allowed: String,
    },
}

impl TriggerError {
    /// The metadata key at fault.
    pub fn key(&self) -> &str {
        match self {
            TriggerError::UnknownKey { key, .. }
            | TriggerError::Missing { key, .. }
            | TriggerError::Invalid { key, .. } => key,
        }
    }

    fn invalid(key: &str, value: &str, reason: impl Into<String>, allowed: &str) -> Self {
        TriggerError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
            allowed: allowed.to_string(),
        }
    }
}

/// What a trigger measures.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Requests per second across all pods (probe routes excluded unless `route` names one).
    RequestRate,
    /// A quantile of request latency in seconds.
    Latency { quantile: f64 },
    /// Bytes allocated per second across all pods.
    AllocatorPressure,
    /// Async jobs queued plus jobs running, across all pods.
    Backlog,
    /// Any PromQL the user gives (Prometheus source only).
    Query { query: String },
}

impl TriggerKind {
    /// The `trigger` metadata value naming this kind.
    pub fn name(&self) -> &'static str {
        match self {
            TriggerKind::RequestRate => "request_rate",
            TriggerKind::Latency { .. } => "latency",
            TriggerKind::AllocatorPressure => "allocator_pressure",
            TriggerKind::Backlog => "backlog",
            TriggerKind::Query { .. } => "query",
        }
    }
}

/// The trigger kinds accepted in `trigger`.
pub const TRIGGER_KINDS: &str = "request_rate, latency, allocator_pressure, backlog, query";

/// Where a trigger's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceSpec {
    /// Prometheus HTTP API at this base URL (no trailing slash).
    Prometheus { url: String },
    /// Scrape the pods' `/metrics` directly.
    Direct { targets: DirectTargets },
    /// No `serverAddress` nor `targets`: the server's `--prometheus-url`, if it has one.
    DefaultPrometheus,
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

/// How the ScaledObject hands the metric to the HPA; the scaler needs it only to explain the replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    AverageValue,
    Value,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::AverageValue => "AverageValue",
            MetricType::Value => "Value",
        }
    }
}

/// Comparison of a label matcher, as in PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One label matcher of the `selector` metadata, e.g. `namespace="autoscaling-lab"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Whether a series with these labels passes (equality matchers only; regex ones are refused for direct sources).
    /// An absent label compares as the empty string, as in PromQL.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let actual = labels
            .iter()
            .find(|(name, _)| *name == self.label)
            .map(|(_, value)| value.as_str())
            .unwrap_or("");
        match self.op {
            MatchOp::Eq => actual == self.value,
            MatchOp::Ne => actual != self.value,
            // Never reached for direct sources (refused at parse time); conservative answer otherwise.
            MatchOp::Re | MatchOp::NotRe => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.label,
            self.op.as_str(),
            escape_label_value(&self.value)
        )
    }
}

/// A validated trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    pub kind: TriggerKind,
    pub source: SourceSpec,
    /// Per-replica target (AverageValue) or the target value (Value).
    pub target: f64,
    /// Active when the value is strictly above this.
    pub activation_target: f64,
    /// Scope to one route template, e.g. `/load/cpu`.
    pub route: Option<String>,
    /// Rate / quantile window.
    pub window: Duration,
    /// Extra label matchers.
    pub selector: Vec<Matcher>,
    /// Stable and unique per trigger; independent of `target` and `activationTarget`.
    pub metric_name: String,
    pub metric_type: MetricType,
    /// Prometheus source: an empty result counts as 0 (true, KEDA's default) or as an error.
    pub ignore_null_values: bool,
}

const COMMON_KEYS: [&str; 9] = [
    "trigger",
    "target",
    "activationTarget",
    "serverAddress",
    "targets",
    "metricName",
    "metricType",
    "ignoreNullValues",
    "selector",
];

fn allowed_keys(kind: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = COMMON_KEYS.to_vec();
    match kind {
        "request_rate" => keys.extend(["route", "window"]),
        "latency" => keys.extend(["route", "window", "quantile"]),
        "allocator_pressure" => keys.extend(["window"]),
        "backlog" => {}
        "query" => {
            keys.retain(|k| *k != "selector" && *k != "targets");
            keys.push("query");
        }
        _ => {}
    }
    keys
}

impl TriggerSpec {
    /// Parses a trigger's metadata. A missing source (no `serverAddress`, no `targets`) yields
    /// [`SourceSpec::DefaultPrometheus`]; the server resolves it to `--prometheus-url` or refuses it.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<TriggerSpec, TriggerError> {
        let normalized = normalize_keda_metadata(metadata)?;
        let metadata = &normalized;
        let kind_name = match metadata.get("trigger") {
            Some(kind) => kind.trim(),
            None => {
                return Err(TriggerError::Missing {
                    key: "trigger".into(),
                    hint: format!("say which signal to scale on, one of: {TRIGGER_KINDS}"),
                });
            }
        };
        if !TRIGGER_KINDS.split(", ").any(|k| k == kind_name) {
            return Err(TriggerError::invalid(
                "trigger",
                kind_name,
                "unknown trigger",
                TRIGGER_KINDS,
            ));
        }
        let allowed = allowed_keys(kind_name);
        let mut keys: Vec<&String> = metadata.keys().collect();
        keys.sort();
        for key in keys {
            if !allowed.contains(&key.as_str()) {
                return Err(TriggerError::UnknownKey {
                    key: key.clone(),
                    trigger: kind_name.to_string(),
                    allowed: format!(
                        "{} (plus KEDA's {}, and <key>FromEnv for any of them)",
                        allowed.join(", "),
                        KEDA_CONNECTION_KEYS.join(", ")
                    ),
                });
            }
        }
        let get = |key: &str| metadata.get(key).map(|v| v.trim());

        let kind = match kind_name {
            "request_rate" => TriggerKind::RequestRate,
            "latency" => TriggerKind::Latency {
                quantile: match get("quantile") {
                    Some(raw) => parse_number(
                        "quantile",
                        raw,
                        |q| q > 0.0 && q < 1.0,
                        "a number strictly between 0 and 1, e.g. 0.95",
                    )?,
                    None => 0.95,
                },
            },
            "allocator_pressure" => TriggerKind::AllocatorPressure,
            "backlog" => TriggerKind::Backlog,
            _ => {
                let query = get("query").unwrap_or("");
                if query.is_empty() {
                    return Err(TriggerError::Missing {
                        key: "query".into(),
                        hint: "the `query` trigger needs a PromQL expression returning one value"
                            .into(),
                    });
                }
                TriggerKind::Query {
                    query: query.to_string(),
                }
            }
        };

        let source = match (get("serverAddress"), get("targets")) {
            (Some(_), Some(_)) => {
                return Err(TriggerError::invalid(
                    "targets",
                    get("targets").unwrap_or_default(),
                    "give either `serverAddress` (Prometheus) or `targets` (direct scrape), not both",
                    "one of serverAddress, targets",
                ));
            }
            (Some(url), None) => SourceSpec::Prometheus {
                url: parse_http_url("serverAddress", url)?,
            },
            (None, Some(targets)) => SourceSpec::Direct {
                targets: parse_targets(targets)?,
            },
            (None, None) => SourceSpec::DefaultPrometheus,
        };

        let default_target = match kind {
            TriggerKind::RequestRate => Some(5.0),
            TriggerKind::Latency { .. } => Some(2.0),
            _ => None,
        };
        let target = match (get("target"), default_target) {
            (Some(raw), _) => {
                parse_number("target", raw, |t| t > 0.0, "a finite number greater than 0")?
            }
            (None, Some(default)) => default,
            (None, None) => {
                return Err(TriggerError::Missing {
                    key: "target".into(),
                    hint: format!(
                        "the `{kind_name}` trigger has no natural default; give the per-replica target value"
                    ),
                });
            }
        };
        let activation_target = match get("activationTarget") {
            Some(raw) => parse_number(
                "activationTarget",
                raw,
                |_| true,
                "a finite number (active when the value is strictly above it)",
            )?,
            None => 0.0,
        };
        let route = match get("route") {
            Some(route) => Some(parse_route(route)?),
            None => None,
        };
        let window = match get("window") {
            Some(raw) => parse_window(raw)?,
            None => DEFAULT_WINDOW,
        };
        let selector = match get("selector") {
            Some(raw) => parse_selector(raw)?,
            None => Vec::new(),
        };
        if matches!(source, SourceSpec::Direct { .. })
            && let Some(regex) = selector
                .iter()
                .find(|m| matches!(m.op, MatchOp::Re | MatchOp::NotRe))
        {
            return Err(TriggerError::invalid(
                "selector",
                &regex.to_string(),
                "regex matchers need a Prometheus source; the direct source supports = and !=",
                "label=\"value\" or label!=\"value\", comma separated",
            ));
        }
        if matches!(kind, TriggerKind::Query { .. }) && matches!(source, SourceSpec::Direct { .. })
        {
            return Err(TriggerError::invalid(
                "targets",
                get("targets").unwrap_or_default(),
                "the `query` trigger runs PromQL, so it needs a Prometheus source",
                "serverAddress, or the server's --prometheus-url",
            ));
        }
        let metric_type = match get("metricType") {
            Some("AverageValue") => MetricType::AverageValue,
            Some("Value") => MetricType::Value,
            Some(other) => {
                return Err(TriggerError::invalid(
                    "metricType",
                    other,
                    "unknown metric type (it must match the ScaledObject trigger's metricType)",
                    "AverageValue, Value",
                ));
            }
            None if matches!(kind, TriggerKind::Latency { .. }) => MetricType::Value,
            None => MetricType::AverageValue,
        };
        let ignore_null_values = match get("ignoreNullValues") {
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(TriggerError::invalid(
                        "ignoreNullValues",
                        raw,
                        "not a boolean",
                        "true, false",
                    ));
                }
            },
            None => true,
        };

        let mut spec = TriggerSpec {
            kind,
            source,
            target,
            activation_target,
            route,
            window,
            selector,
            metric_name: String::new(),
            metric_type,
            ignore_null_values,
        };
        spec.metric_name = match get("metricName") {
            Some(name) => parse_metric_name(name)?,
            None => spec.default_metric_name(),
        };
        Ok(spec)
    }

    /// `<kind>[-p<quantile>][-<route>]-<hash>`: readable, unique per distinct measurement (source, selector, route, window,
    /// quantile, query), and unchanged when only the target changes.
    fn default_metric_name(&self) -> String {
        let mut name = self.kind.name().replace('_', "-");
        if let TriggerKind::Latency { quantile } = self.kind {
            name.push_str(&format!("-p{}", format_quantile(quantile)));
        }
        if let Some(route) = &self.route {
            let slug: String = route
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let slug = slug.trim_matches('-');
            if !slug.is_empty() {
                name.push('-');
                name.push_str(slug);
            }
        }
        let identity = format!(
            "{}|{}|{:?}|{}|{}|{:?}",
            self.source.id(),
            self.selector
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(","),
            self.route,
            self.window.as_secs(),
            match &self.kind {
                TriggerKind::Query { query } => query.as_str(),
                _ => "",
            },
            match self.kind {
                TriggerKind::Latency { quantile } => quantile,
                _ => 0.0,
            },
        );
        format!("{name}-{:06x}", fnv1a(identity.as_bytes()) & 0xff_ffff)
    }

    /// The label matchers of the consumer's request metrics for this trigger (route scoping plus `selector`).
    fn request_matchers(&self) -> Vec<String> {
        let mut matchers = Vec::new();
        match &self.route {
            Some(route) => matchers.push(format!("route=\"{}\"", escape_label_value(route))),
            None => matchers.push(format!("route!~\"{}\"", PROBE_ROUTES.join("|"))),
        }
        matchers.extend(self.selector.iter().map(|m| m.to_string()));
        matchers
    }

    fn selector_matchers(&self) -> Vec<String> {
        self.selector.iter().map(|m| m.to_string()).collect()
    }

    /// The PromQL that measures this trigger on a Prometheus source.
    pub fn promql(&self) -> String {
        let window = format!("{}s", self.window.as_secs());
        match &self.kind {
            TriggerKind::RequestRate => format!(
                "sum(rate(http_requests_total{{{}}}[{window}]))",
                self.request_matchers().join(",")
            ),
            TriggerKind::Latency { quantile } => format!(
                "histogram_quantile({}, sum by (le) (rate(http_request_duration_seconds_bucket{{{}}}[{window}])))",
                quantile,
                self.request_matchers().join(",")
            ),
            TriggerKind::AllocatorPressure => format!(
                "sum(rate(consumer_allocated_bytes_total{{{}}}[{window}]))",
                self.selector_matchers().join(",")
            ),
            TriggerKind::Backlog => {
                let mut matchers =
                    vec!["__name__=~\"consumer_jobs_queued|consumer_jobs_running\"".to_string()];
                matchers.extend(self.selector_matchers());
                format!("sum({{{}}})", matchers.join(","))
            }
            TriggerKind::Query { query } => query.clone(),
        }
    }

    /// For Prometheus sources of the built-in triggers: counts the pods behind the signal (`consumer_build_info` is 1 per
    /// replica), so `/explain` can apply the HPA formula with the real replica count.
    pub fn replicas_promql(&self) -> Option<String> {
        match self.kind {
            TriggerKind::Query { .. } => None,
            _ => Some(format!(
                "count(consumer_build_info{{{}}})",
                self.selector_matchers().join(",")
            )),
        }
    }

    /// Whether a series of the consumer's request metrics counts for this trigger (direct source).
    pub fn request_series_matches(&self, labels: &[(String, String)]) -> bool {
        let route = labels
            .iter()
            .find(|(name, _)| name == "route")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let route_ok = match &self.route {
            Some(wanted) => route == wanted,
            None => !PROBE_ROUTES.contains(&route),
        };
        route_ok && self.selector_matches(labels)
    }

    /// Whether a series passes the `selector` matchers (direct source).
    pub fn selector_matches(&self, labels: &[(String, String)]) -> bool {
        self.selector.iter().all(|m| m.matches(labels))
    }

    /// A one-line description of how the value is computed, for `/explain`.
    pub fn describe(&self) -> String {
        match &self.source {
            SourceSpec::Direct { .. } => match &self.kind {
                TriggerKind::RequestRate => format!(
                    "sum over pods of increase(http_requests_total{{{}}}) / elapsed, over {}s",
                    self.request_matchers().join(","),
                    self.window.as_secs()
                ),
                TriggerKind::Latency { quantile } => format!(
                    "quantile {quantile} of the increase of http_request_duration_seconds_bucket{{{}}} summed over pods, over {}s",
                    self.request_matchers().join(","),
                    self.window.as_secs()
                ),
                TriggerKind::AllocatorPressure => format!(
                    "sum over pods of increase(consumer_allocated_bytes_total{{{}}}) / elapsed, over {}s",
                    self.selector_matchers().join(","),
                    self.window.as_secs()
                ),
                TriggerKind::Backlog => format!(
                    "sum over pods of consumer_jobs_queued + consumer_jobs_running{{{}}}",
                    self.selector_matchers().join(",")
                ),
                TriggerKind::Query { query } => query.clone(),
            },
            _ => self.promql(),
        }
    }
}

/// KEDA's own keys of an external trigger; KEDA passes them along in `scalerMetadata` and the scaler ignores them.
pub const KEDA_CONNECTION_KEYS: [&str; 3] = ["scalerAddress", "enableTLS", "unsafeSsl"];

/// Drops KEDA's connection keys and maps `<key>FromEnv` (KEDA resolves it from the target's environment and passes
/// it under the suffixed name) to `<key>`.
fn normalize_keda_metadata(
    metadata: &HashMap<String, String>,
) -> Result<HashMap<String, String>, TriggerError> {
    let mut normalized = HashMap::with_capacity(metadata.len());
    let mut keys: Vec<&String> = metadata.keys().collect();
    keys.sort();
    for key in keys {
        if KEDA_CONNECTION_KEYS.contains(&key.as_str()) {
            continue;
        }
        let name = key
            .strip_suffix("FromEnv")
            .filter(|base| !base.is_empty())
            .unwrap_or(key);
        if normalized.contains_key(name) {
            return Err(TriggerError::invalid(
                key,
                &metadata[key],
                format!("`{name}` is given twice (directly and through {name}FromEnv)"),
                "one of the two",
            ));
        }
        normalized.insert(name.to_string(), metadata[key].clone());
    }
    Ok(normalized)
}

fn format_quantile(quantile: f64) -> String {
    let percent = quantile * 100.0;
    if (percent - percent.round()).abs() < 1e-9 {
        format!("{}", percent.round() as i64)
    } else {
        format!("{percent}").replace('.', "")
    }
}

/// FNV-1a 64: a tiny hash whose output never changes between Rust releases (std's hasher may), so metric names are stable.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Escapes a label value for PromQL / exposition text.
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn parse_number(
    key: &str,
    raw: &str,
    ok: impl Fn(f64) -> bool,
    allowed: &str,
) -> Result<f64, TriggerError> {
    match raw.parse::<f64>() {
        Ok(value) if value.is_finite() && ok(value) => Ok(value),
        Ok(_) => Err(TriggerError::invalid(key, raw, "out of range", allowed)),
        Err(_) => Err(TriggerError::invalid(key, raw, "not a number", allowed)),
    }
}

fn parse_http_url(key: &str, raw: &str) -> Result<String, TriggerError> {
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

fn parse_targets(raw: &str) -> Result<DirectTargets, TriggerError> {
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

fn parse_route(raw: &str) -> Result<String, TriggerError> {
    let ok = raw.starts_with('/')
        && raw.len() <= 200
        && raw
            .chars()
            .all(|c| !c.is_control() && c != '"' && c != '\\' && c != '`');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(TriggerError::invalid(
            "route",
            raw,
            "not a route template",
            "a route template as the consumer labels it, starting with '/', e.g. /load/cpu or /jobs/{id}",
        ))
    }
}

fn parse_window(raw: &str) -> Result<Duration, TriggerError> {
    const ALLOWED: &str = "whole seconds from 1s to 1h, e.g. 30s, 2m, or a number of seconds";
    let parsed = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(raw).map_err(|e| {
            TriggerError::invalid("window", raw, format!("not a duration: {e}"), ALLOWED)
        })?,
    };
    if parsed.subsec_nanos() != 0 || parsed < Duration::from_secs(1) || parsed > MAX_WINDOW {
        return Err(TriggerError::invalid(
            "window",
            raw,
            "out of range",
            ALLOWED,
        ));
    }
    Ok(parsed)
}

fn parse_metric_name(raw: &str) -> Result<String, TriggerError> {
    let ok = !raw.is_empty()
        && raw.len() <= 100
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(TriggerError::invalid(
            "metricName",
            raw,
            "not a valid external metric name",
            "1-100 characters of a-z, 0-9 and '-', starting with a letter",
        ))
    }
}

/// Parses `label="value", other!="x"` (PromQL matcher syntax, without braces; braces around it are tolerated).
pub fn parse_selector(raw: &str) -> Result<Vec<Matcher>, TriggerError> {
    const ALLOWED: &str = "comma-separated PromQL label matchers, e.g. namespace=\"autoscaling-lab\",pod=~\"consumer-.*\"";
    let bad = |reason: &str| TriggerError::invalid("selector", raw, reason, ALLOWED);
    let text = raw.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let mut matchers: BTreeMap<String, Matcher> = BTreeMap::new();
    let skip_ws = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos].is_whitespace() {
            *pos += 1;
        }
    };
    loop {
        skip_ws(&mut pos);
        if pos >= chars.len() {
            break;
        }
        let start = pos;
        while pos < chars.len() && (chars[pos].is_ascii_alphanumeric() || chars[pos] == '_') {
            pos += 1;
        }
        let label: String = chars[start..pos].iter().collect();
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("expected a label name"));
        }
        skip_ws(&mut pos);
        let op = match (chars.get(pos), chars.get(pos + 1)) {
            (Some('='), Some('~')) => MatchOp::Re,
            (Some('!'), Some('=')) => MatchOp::Ne,
            (Some('!'), Some('~')) => MatchOp::NotRe,
            (Some('='), _) => MatchOp::Eq,
            _ => return Err(bad(&format!("expected =, !=, =~ or !~ after `{label}`"))),
        };
        pos += if op == MatchOp::Eq { 1 } else { 2 };
        skip_ws(&mut pos);
        if chars.get(pos) != Some(&'"') {
            return Err(bad(&format!(
                "the value of `{label}` must be double-quoted"
            )));
        }
        pos += 1;
        let mut value = String::new();
        loop {
            match chars.get(pos) {
                None => return Err(bad("unterminated quoted value")),
                Some('"') => {
                    pos += 1;
                    break;
                }
                Some('\\') => {
                    match chars.get(pos + 1) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(*c),
                        _ => return Err(bad("invalid escape in quoted value")),
                    }
                    pos += 2;
                }
                Some(c) => {
                    value.push(*c);
                    pos += 1;
                }
            }
        }
        let key = format!("{label}{}", op.as_str());
        if matchers.contains_key(&key) {
            return Err(bad(&format!("`{label}` is matched twice")));
        }
        matchers.insert(key, Matcher { label, op, value });
        skip_ws(&mut pos);
        match chars.get(pos) {
            None => break,
            Some(',') => pos += 1,
            Some(c) => {
                return Err(bad(&format!(
                    "unexpected `{c}`; separate matchers with commas"
                )));
            }
        }
    }
    if matchers.is_empty() {
        return Err(bad("no matcher given"));
    }
    Ok(matchers.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_rate_defaults_and_promql_exclude_probe_routes() {
        let spec = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("serverAddress", "http://prometheus:9090/"),
        ]))
        .unwrap();
        assert_eq!(spec.target, 5.0);
        assert_eq!(spec.activation_target, 0.0);
        assert_eq!(spec.window, Duration::from_secs(60));
        assert_eq!(spec.metric_type, MetricType::AverageValue);
        assert_eq!(
            spec.source,
            SourceSpec::Prometheus {
                url: "http://prometheus:9090".into()
            }
        );
        assert_eq!(
            spec.promql(),
            "sum(rate(http_requests_total{route!~\"/health|/ready|/metrics\"}[60s]))"
        );
        assert!(spec.metric_name.starts_with("request-rate-"));
    }

    #[test]
    fn latency_uses_quantile_route_selector_and_value_type() {
        let spec = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "latency"),
            ("quantile", "0.99"),
            ("route", "/load/cpu"),
            ("window", "30s"),
            ("selector", "namespace=\"autoscaling-lab\""),
            ("targets", "consumer-headless.lab.svc"),
        ]))
        .unwrap();
        assert_eq!(spec.target, 2.0);
        assert_eq!(spec.metric_type, MetricType::Value);
        assert!(
            spec.metric_name.starts_with("latency-p99-load-cpu-"),
            "{}",
            spec.metric_name
        );
        assert_eq!(
            spec.source,
            SourceSpec::Direct {
                targets: DirectTargets::Dns {
                    host: "consumer-headless.lab.svc".into(),
                    port: 8080
                }
            }
        );
        let prom = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "latency"),
            ("quantile", "0.99"),
            ("route", "/load/cpu"),
            ("window", "30s"),
            ("selector", "namespace=\"autoscaling-lab\""),
        ]))
        .unwrap();
        assert_eq!(
            prom.promql(),
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{route=\"/load/cpu\",namespace=\"autoscaling-lab\"}[30s])))"
        );
    }

    #[test]
    fn backlog_and_allocator_need_a_target() {
        let err = TriggerSpec::from_metadata(&meta(&[("trigger", "backlog")])).unwrap_err();
        assert_eq!(err.key(), "target");
        let spec =
            TriggerSpec::from_metadata(&meta(&[("trigger", "backlog"), ("target", "10")])).unwrap();
        assert_eq!(
            spec.promql(),
            "sum({__name__=~\"consumer_jobs_queued|consumer_jobs_running\"})"
        );
        let alloc = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "allocator_pressure"),
            ("target", "50e6"),
        ]))
        .unwrap();
        assert_eq!(alloc.target, 50e6);
        assert_eq!(
            alloc.promql(),
            "sum(rate(consumer_allocated_bytes_total{}[60s]))"
        );
    }

    #[test]
    fn metric_name_is_stable_across_targets_and_unique_across_measurements() {
        let a = TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate"), ("target", "5")]))
            .unwrap();
        let b = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("target", "50"),
            ("activationTarget", "3"),
        ]))
        .unwrap();
        let c = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("selector", "method=\"GET\""),
        ]))
        .unwrap();
        assert_eq!(a.metric_name, b.metric_name);
        assert_ne!(a.metric_name, c.metric_name);
        let named = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("metricName", "my-rps"),
        ]))
        .unwrap();
        assert_eq!(named.metric_name, "my-rps");
    }

    #[test]
    fn bad_metadata_names_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "trigger"),
            (&[("trigger", "cpu")], "trigger"),
            (&[("trigger", "request_rate"), ("targt", "5")], "targt"),
            (&[("trigger", "request_rate"), ("target", "five")], "target"),
            (&[("trigger", "request_rate"), ("target", "0")], "target"),
            (&[("trigger", "request_rate"), ("target", "NaN")], "target"),
            (
                &[("trigger", "request_rate"), ("activationTarget", "inf")],
                "activationTarget",
            ),
            (&[("trigger", "latency"), ("quantile", "1.5")], "quantile"),
            (&[("trigger", "request_rate"), ("window", "0s")], "window"),
            (&[("trigger", "request_rate"), ("window", "1.5s")], "window"),
            (&[("trigger", "request_rate"), ("window", "2h")], "window"),
            (
                &[("trigger", "request_rate"), ("route", "load/cpu")],
                "route",
            ),
            (&[("trigger", "request_rate"), ("route", "/a\"b")], "route"),
            (
                &[("trigger", "backlog"), ("target", "1"), ("route", "/x")],
                "route",
            ),
            (
                &[
                    ("trigger", "request_rate"),
                    ("serverAddress", "prometheus:9090"),
                ],
                "serverAddress",
            ),
            (
                &[("trigger", "request_rate"), ("serverAddress", "ftp://p")],
                "serverAddress",
            ),
            (
                &[("trigger", "request_rate"), ("targets", "bad host!")],
                "targets",
            ),
            (
                &[("trigger", "request_rate"), ("targets", "svc:99999")],
                "targets",
            ),
            (
                &[
                    ("trigger", "request_rate"),
                    ("targets", "a"),
                    ("serverAddress", "http://p"),
                ],
                "targets",
            ),
            (
                &[("trigger", "request_rate"), ("selector", "namespace=lab")],
                "selector",
            ),
            (
                &[("trigger", "request_rate"), ("selector", "a=\"1\" b=\"2\"")],
                "selector",
            ),
            (&[("trigger", "request_rate"), ("selector", "")], "selector"),
            (
                &[
                    ("trigger", "request_rate"),
                    ("targets", "svc"),
                    ("selector", "pod=~\"x.*\""),
                ],
                "selector",
            ),
            (&[("trigger", "query")], "query"),
            (
                &[
                    ("trigger", "query"),
                    ("query", "up"),
                    ("target", "1"),
                    ("targets", "svc"),
                ],
                "targets",
            ),
            (
                &[
                    ("trigger", "query"),
                    ("query", "up"),
                    ("target", "1"),
                    ("selector", "a=\"b\""),
                ],
                "selector",
            ),
            (
                &[("trigger", "request_rate"), ("metricName", "Bad_Name")],
                "metricName",
            ),
            (
                &[("trigger", "request_rate"), ("metricType", "Utilization")],
                "metricType",
            ),
            (
                &[("trigger", "request_rate"), ("ignoreNullValues", "yes")],
                "ignoreNullValues",
            ),
        ];
        for (pairs, key) in cases {
            let err = TriggerSpec::from_metadata(&meta(pairs))
                .expect_err(&format!("{pairs:?} should be refused"));
            assert_eq!(err.key(), *key, "{pairs:?}: {err}");
        }
        let unknown = TriggerSpec::from_metadata(&meta(&[("trigger", "backlog"), ("qeury", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("`qeury`") && unknown.contains("activationTarget"),
            "{unknown}"
        );
    }

    #[test]
    fn keda_connection_keys_are_ignored_and_from_env_keys_resolved() {
        let spec = TriggerSpec::from_metadata(&meta(&[
            ("scalerAddress", "scaler.lab.svc:6000"),
            ("enableTLS", "false"),
            ("trigger", "backlog"),
            ("targetFromEnv", "7"),
            ("targets", "consumer-headless:8080"),
        ]))
        .unwrap();
        assert_eq!(spec.target, 7.0);
        let twice = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "backlog"),
            ("target", "1"),
            ("targetFromEnv", "7"),
        ]))
        .unwrap_err();
        assert_eq!(twice.key(), "targetFromEnv");
    }

    #[test]
    fn selector_parsing_handles_escapes_and_all_operators() {
        let matchers =
            parse_selector(r#"{ namespace="lab" , pod=~"consumer-.*", path!="a\"b", x!~"y" }"#)
                .unwrap();
        assert_eq!(matchers.len(), 4);
        let path = matchers.iter().find(|m| m.label == "path").unwrap();
        assert_eq!(path.value, "a\"b");
        assert_eq!(path.to_string(), r#"path!="a\"b""#);
        let labels = vec![("namespace".to_string(), "lab".to_string())];
        let ns = matchers.iter().find(|m| m.label == "namespace").unwrap();
        assert!(ns.matches(&labels));
        assert!(!ns.matches(&[]));
    }

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

    #[test]
    fn direct_request_filter_excludes_probes_unless_route_given() {
        let spec = TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate")])).unwrap();
        let labels = |route: &str| vec![("route".to_string(), route.to_string())];
        assert!(spec.request_series_matches(&labels("/load/cpu")));
        assert!(!spec.request_series_matches(&labels("/metrics")));
        let scoped =
            TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate"), ("route", "/health")]))
                .unwrap();
        assert!(scoped.request_series_matches(&labels("/health")));
        assert!(!scoped.request_series_matches(&labels("/load/cpu")));
    }
}
