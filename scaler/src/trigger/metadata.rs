//! Parses and validates the `metadata` map KEDA passes as `scalerMetadata` into a [`TriggerSpec`]: KEDA's own keys
//! dropped, `<key>FromEnv` resolved, the trigger kind read once ([`Kind`]), then each key checked with an error that
//! names it.

use std::collections::HashMap;
use std::time::Duration;

use super::kind::{DEFAULT_WINDOW, Kind, TRIGGER_KINDS};
use super::naming::parse_metric_name;
use super::selector::{MatchOp, parse_selector};
use super::source::{SourceSpec, parse_http_url, parse_targets};
use super::{MetricType, TriggerError, TriggerKind, TriggerSpec};

const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// KEDA's own keys of an external trigger (its connection to this scaler); KEDA passes them along in
/// `scalerMetadata` and the scaler ignores them. `unsafeSsl` is not among them: the scaler honours it for its own
/// https source, as KEDA's Prometheus trigger does.
pub const KEDA_CONNECTION_KEYS: [&str; 2] = ["scalerAddress", "enableTLS"];

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
        let Some(kind_tag) = Kind::parse(kind_name) else {
            return Err(TriggerError::invalid(
                "trigger",
                kind_name,
                "unknown trigger",
                TRIGGER_KINDS,
            ));
        };
        let allowed = kind_tag.allowed_keys();
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

        let kind = match kind_tag {
            Kind::RequestRate => TriggerKind::RequestRate,
            Kind::Latency => TriggerKind::Latency {
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
            Kind::AllocatorPressure => TriggerKind::AllocatorPressure,
            Kind::Backlog => TriggerKind::Backlog,
            Kind::Query => {
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
            Kind::Kafka => return kafka_spec(&get),
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

        let target = match (get("target"), kind_tag.default_target()) {
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
        if kind_tag == Kind::Query && matches!(source, SourceSpec::Direct { .. }) {
            return Err(TriggerError::invalid(
                "targets",
                get("targets").unwrap_or_default(),
                "the `query` trigger runs PromQL, so it needs a Prometheus source",
                "serverAddress, or the server's --prometheus-url",
            ));
        }
        let metric_type = parse_metric_type(get("metricType"), kind_tag)?;
        let ignore_null_values = parse_bool("ignoreNullValues", get("ignoreNullValues"), true)?;
        let unsafe_ssl = parse_bool("unsafeSsl", get("unsafeSsl"), false)?;

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
            unsafe_ssl,
        };
        spec.metric_name = match get("metricName") {
            Some(name) => parse_metric_name(name)?,
            None => spec.default_metric_name(),
        };
        Ok(spec)
    }
}

/// The `kafka` trigger: KEDA's keys (`super::kafka`); lagThreshold is the target, activationLagThreshold the
/// activation target, and the metric type defaults to AverageValue as in KEDA.
fn kafka_spec<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<TriggerSpec, TriggerError> {
    let parsed = super::kafka::parse_kafka(get)?;
    let mut spec = TriggerSpec {
        target: parsed.spec.lag_threshold as f64,
        activation_target: parsed.spec.activation_lag_threshold as f64,
        kind: TriggerKind::Kafka(parsed.spec),
        source: parsed.source,
        route: None,
        window: DEFAULT_WINDOW,
        selector: Vec::new(),
        metric_name: String::new(),
        metric_type: parse_metric_type(get("metricType"), Kind::Kafka)?,
        ignore_null_values: true,
        unsafe_ssl: false,
    };
    spec.metric_name = match get("metricName") {
        Some(name) => parse_metric_name(name)?,
        None => spec.default_metric_name(),
    };
    Ok(spec)
}

fn parse_metric_type(raw: Option<&str>, kind: Kind) -> Result<MetricType, TriggerError> {
    match raw {
        Some(text) => match text.parse::<MetricType>() {
            // Utilization is the HPA's percent of a resource request: an external metric cannot be one.
            Ok(MetricType::Utilization) | Err(_) => Err(TriggerError::invalid(
                "metricType",
                text,
                "unknown metric type (it must match the ScaledObject trigger's metricType)",
                "AverageValue, Value",
            )),
            Ok(metric_type) => Ok(metric_type),
        },
        // Latency is not additive: a per-replica average of it means nothing.
        None if kind == Kind::Latency => Ok(MetricType::Value),
        None => Ok(MetricType::AverageValue),
    }
}

pub(super) fn parse_bool(
    key: &str,
    raw: Option<&str>,
    default: bool,
) -> Result<bool, TriggerError> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(TriggerError::invalid(
            key,
            raw.unwrap_or_default(),
            "not a boolean",
            "true, false",
        )),
    }
}

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
            (
                &[("trigger", "request_rate"), ("unsafeSsl", "yes")],
                "unsafeSsl",
            ),
            (
                &[("trigger", "request_rate"), ("caCert", "-----BEGIN")],
                "caCert",
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
    fn unsafe_ssl_is_read_not_ignored() {
        let base = [("trigger", "backlog"), ("target", "1")];
        let parse = |extra: &[(&str, &str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            TriggerSpec::from_metadata(&meta(&pairs)).unwrap()
        };
        assert!(!parse(&[]).unsafe_ssl);
        assert!(!parse(&[("unsafeSsl", "false")]).unsafe_ssl);
        assert!(parse(&[("unsafeSsl", "TRUE")]).unsafe_ssl);
        // The measurement is the same: the metric name does not depend on it.
        assert_eq!(
            parse(&[]).metric_name,
            parse(&[("unsafeSsl", "true")]).metric_name
        );
    }
}
