//! Replica sources for `--monitor`, implementations of the load core's [`ReplicaSource`]: the scaler's `/explain`,
//! Prometheus, and with the `kubernetes` feature the Kubernetes API through kube-rs (the one part that links a
//! Kubernetes client; the lab leaves it off), plus a fallback chain that uses the first source that answers. Besides
//! the counts, the Kubernetes and `/explain` sources keep a [`ScalingRecord`] for the scaling analysis.

mod chain;
#[cfg(feature = "kubernetes")]
mod kube;
#[cfg(feature = "kubernetes")]
pub mod kube_api;
#[cfg(feature = "kubernetes")]
pub mod kube_history;

pub use chain::{FallbackSource, SignalTap};
#[cfg(feature = "kubernetes")]
pub use kube::{KubeSource, KubeTarget};

use std::sync::Arc;
use std::time::Duration;

use contract::explain::Explain;
use contract::metrics::kube_state_metrics as ksm;
use futures::future::BoxFuture;
use load::client::SimpleClient;

pub use load::monitor::{MonitorError, ReplicaSnapshot, ReplicaSource, ScalingRecord, record};

/// Observes one ScaledObject through the scaler's `GET /explain` ([`contract::explain::Explain`]). The scaler knows the
/// metric values and targets, not the Deployment: `desired` is the largest replica count the ScaledObject's fresh
/// triggers ask for (the scaler's own `replicas_for_value`, the HPA formula of the autoscaler crate), `current` the
/// count the scaler last saw, and the trigger values are the detail. Other ScaledObjects the scaler serves are
/// ignored.
#[derive(Debug, Clone)]
pub struct ExplainSource {
    url: String,
    scaled_object: String,
    client: SimpleClient,
    signals: Arc<std::sync::Mutex<Vec<record::RecordedSignal>>>,
}

impl ExplainSource {
    /// `base` is the scaler's HTTP base URL, e.g. `http://scaler:6001`; `scaled_object` is `namespace/name` (or a
    /// name the scaler serves only once).
    pub fn new(base: &str, scaled_object: &str) -> ExplainSource {
        ExplainSource {
            url: format!(
                "{}{}",
                base.trim_end_matches('/'),
                contract::routes::EXPLAIN
            ),
            scaled_object: scaled_object.to_string(),
            client: SimpleClient::new(Duration::from_secs(3)),
            signals: Arc::default(),
        }
    }

    async fn observe_now(&self) -> Result<ReplicaSnapshot, MonitorError> {
        let err = |reason: String| MonitorError::Explain {
            url: self.url.clone(),
            reason,
        };
        let (status, body) = self
            .client
            .get(&self.url)
            .await
            .map_err(|e| err(e.to_string()))?;
        if status != 200 {
            return Err(err(format!("status {status}")));
        }
        let explain: Explain = serde_json::from_slice(&body)
            .map_err(|e| err(format!("not the scaler's /explain document: {e}")))?;
        let at = record::unix_now();
        self.signals.lock().expect("signal lock").extend(signals_of(
            &explain,
            &self.scaled_object,
            at,
        ));
        snapshot_of(&explain, &self.scaled_object).map_err(err)
    }
}

/// The trigger readings of one ScaledObject in an `/explain` document read at `at_unix`: each trigger with a value
/// (an errored or value-less trigger says nothing about crossing).
pub fn signals_of(
    explain: &Explain,
    scaled_object: &str,
    at_unix: f64,
) -> Vec<record::RecordedSignal> {
    let Some(object) = explain.scaled_object(scaled_object) else {
        return Vec::new();
    };
    object
        .triggers
        .iter()
        .filter_map(|t| {
            Some(record::RecordedSignal {
                at_unix,
                trigger: t.trigger.clone(),
                value: t.value?,
                target: t.target,
                metric_type: if t.metric_type == "Value" {
                    timeline::MetricType::Value
                } else {
                    timeline::MetricType::AverageValue
                },
                age_s: t.age_seconds,
            })
        })
        .collect()
}

/// The replicas of one ScaledObject in an `/explain` document, or why it is not there.
pub fn snapshot_of(explain: &Explain, scaled_object: &str) -> Result<ReplicaSnapshot, String> {
    let Some(object) = explain.scaled_object(scaled_object) else {
        let served: Vec<&str> = explain
            .scaled_objects
            .iter()
            .map(|o| o.scaled_object.as_str())
            .collect();
        return Err(format!(
            "ScaledObject {scaled_object} is not served by this scaler (it serves: {})",
            if served.is_empty() {
                "none".to_string()
            } else {
                served.join(", ")
            }
        ));
    };
    let (desired, current) = object.replicas();
    let details: Vec<String> = object
        .triggers
        .iter()
        .map(|t| match t.value {
            Some(v) if t.stale => format!("{} {v:.3}/{} (stale)", t.trigger, t.target),
            Some(v) => format!("{} {v:.3}/{}", t.trigger, t.target),
            None => format!("{} -/{} (no value yet)", t.trigger, t.target),
        })
        .collect();
    Ok(ReplicaSnapshot {
        desired: desired.map(|d| u32::try_from(d).unwrap_or(u32::MAX)),
        current,
        ready: None,
        detail: (!details.is_empty()).then(|| details.join(", ")),
        source: "explain".into(),
    })
}

impl ReplicaSource for ExplainSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(self.observe_now())
    }
    fn name(&self) -> String {
        format!("scaler {} ({})", self.url, self.scaled_object)
    }
    fn record(&self) -> Option<ScalingRecord> {
        Some(ScalingRecord {
            signals: self.signals.lock().expect("signal lock").clone(),
            ..ScalingRecord::default()
        })
    }
}

/// Observes replicas with PromQL (kube-state-metrics series by default).
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    base: String,
    pub desired_query: String,
    pub current_query: String,
    pub ready_query: String,
    client: SimpleClient,
}

impl PrometheusSource {
    /// Queries kube-state-metrics for `deployment` in `namespace`.
    pub fn new(base: &str, namespace: &str, deployment: &str) -> PrometheusSource {
        let sel = format!("namespace=\"{namespace}\",deployment=\"{deployment}\"");
        PrometheusSource {
            base: base.trim_end_matches('/').to_string(),
            desired_query: format!("max({}{{{sel}}})", ksm::DEPLOYMENT_SPEC_REPLICAS),
            current_query: format!("max({}{{{sel}}})", ksm::DEPLOYMENT_STATUS_REPLICAS),
            ready_query: format!("max({}{{{sel}}})", ksm::DEPLOYMENT_STATUS_REPLICAS_READY),
            client: SimpleClient::new(Duration::from_secs(3)),
        }
    }

    /// Scalar value of an instant query, `None` when the result is empty.
    pub async fn query_scalar(&self, promql: &str) -> Result<Option<f64>, MonitorError> {
        let err = |reason: String| MonitorError::Prometheus {
            url: self.base.clone(),
            reason,
        };
        let url = format!("{}/api/v1/query?query={}", self.base, url_encode(promql));
        let (status, body) = self
            .client
            .get(&url)
            .await
            .map_err(|e| err(e.to_string()))?;
        if status != 200 {
            return Err(err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| err(format!("not JSON: {e}")))?;
        let first = v.pointer("/data/result/0/value/1").and_then(|x| x.as_str());
        Ok(first.and_then(|s| s.parse::<f64>().ok()))
    }

    async fn observe_now(&self) -> Result<ReplicaSnapshot, MonitorError> {
        let as_u32 = |f: Option<f64>| f.map(|f| f.max(0.0).round() as u32);
        let desired = as_u32(self.query_scalar(&self.desired_query).await?);
        let current = as_u32(self.query_scalar(&self.current_query).await?);
        let ready = as_u32(self.query_scalar(&self.ready_query).await?);
        if desired.is_none() && current.is_none() && ready.is_none() {
            return Err(MonitorError::Prometheus {
                url: self.base.clone(),
                reason: format!("no series for {}", self.current_query),
            });
        }
        Ok(ReplicaSnapshot {
            desired,
            current,
            ready,
            detail: None,
            source: "prometheus".into(),
        })
    }
}

impl ReplicaSource for PrometheusSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(self.observe_now())
    }
    fn name(&self) -> String {
        format!("prometheus {}", self.base)
    }
}

/// Percent-encode a query string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::explain::{ExplainScaledObject, ExplainTrigger};
    use serde_json::json;

    fn trigger(object: &str, name: &str, value: Option<f64>, wants: Option<u64>) -> ExplainTrigger {
        serde_json::from_value(json!({
            "scaled_object": object, "trigger": name, "metric_name": name, "kind": "backlog",
            "source": "direct:x", "query": "", "value": value, "age_seconds": 0.5, "stale": false,
            "target": 10.0, "activation_target": 0.0, "active": true, "above_activation": true,
            "metric_type": "AverageValue", "window_seconds": 30, "route": null, "current_replicas": 2,
            "replicas_for_value": wants, "error": null, "pending": null, "note": null
        }))
        .expect("a trigger in the contract's schema")
    }

    fn explain() -> Explain {
        let object = |key: &str, triggers: Vec<ExplainTrigger>| ExplainScaledObject {
            scaled_object: key.into(),
            active: true,
            triggers,
        };
        Explain {
            generated_at: "now".into(),
            scaled_objects: vec![
                object(
                    "lab/consumer",
                    vec![
                        trigger("lab/consumer", "backlog", Some(30.0), Some(6)),
                        trigger("lab/consumer", "rate", None, None),
                    ],
                ),
                object(
                    "lab/other",
                    vec![trigger("lab/other", "backlog", Some(900.0), Some(90))],
                ),
            ],
            sources: vec![],
        }
    }

    #[test]
    fn reads_only_the_monitored_scaled_object() {
        let s = snapshot_of(&explain(), "lab/consumer").unwrap();
        assert_eq!((s.desired, s.current, s.ready), (Some(6), Some(2), None));
        assert_eq!(
            s.detail.as_deref(),
            Some("backlog 30.000/10, rate -/10 (no value yet)")
        );
        assert_eq!(snapshot_of(&explain(), "other").unwrap().desired, Some(90));
        let missing = snapshot_of(&explain(), "lab/nothing").unwrap_err();
        assert!(
            missing.contains("lab/consumer, lab/other"),
            "names what is served: {missing}"
        );
    }

    #[test]
    fn signals_are_the_monitored_objects_readings_with_a_value() {
        let signals = signals_of(&explain(), "lab/consumer", 100.0);
        assert_eq!(signals.len(), 1, "the trigger without a value says nothing");
        let s = &signals[0];
        assert_eq!(
            (
                s.trigger.as_str(),
                s.value,
                s.target,
                s.metric_type,
                s.age_s
            ),
            (
                "backlog",
                30.0,
                10.0,
                timeline::MetricType::AverageValue,
                Some(0.5)
            )
        );
        assert!(signals_of(&explain(), "lab/nothing", 1.0).is_empty());
    }

    #[test]
    fn encode() {
        assert_eq!(url_encode("up{a=\"b\"}"), "up%7Ba%3D%22b%22%7D");
    }
}
