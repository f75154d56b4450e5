//! Replica observation for `--monitor`: the [`ReplicaSource`] trait and its implementations (the Kubernetes API via
//! kube-rs, the scaler's `/explain`, Prometheus), plus a fallback chain that uses the first source that answers.
//! Besides the counts, the Kubernetes and `/explain` sources keep a [`ScalingRecord`] for the scaling analysis.

mod chain;
pub mod kube_history;
pub mod record;

pub use chain::{FallbackSource, SignalTap};

use std::sync::Arc;
use std::time::Duration;

use contract::explain::Explain;
use contract::metrics::kube_state_metrics as ksm;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// Each Kubernetes call of the monitor: an observation is due every poll, and a slow API must not hold it.
const MONITOR_CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::model::ReplicaSnapshot;
pub use record::ScalingRecord;

/// Why an observation failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("kubernetes API: {0}")]
    Kube(String),
    #[error("scaler /explain at {url}: {reason}")]
    Explain { url: String, reason: String },
    #[error("prometheus at {url}: {reason}")]
    Prometheus { url: String, reason: String },
    #[error("no replica source answered: {0}")]
    NoSource(String),
    #[error("{0}")]
    Other(String),
}

/// Something that can tell how many replicas the target has. The generator polls it during a run; the lab implements
/// it over its own replica controller.
pub trait ReplicaSource: Send + Sync {
    /// Observe the replicas now.
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>>;
    /// A short name for logs and the report.
    fn name(&self) -> String;
    /// What the source recorded for the scaling analysis beyond the counts (decisions, pods, signals, settings),
    /// `None` when it records nothing.
    fn record(&self) -> Option<ScalingRecord> {
        None
    }
}

/// Where the Kubernetes API is and what to watch.
#[derive(Debug, Clone)]
pub struct KubeTarget {
    pub namespace: String,
    pub deployment: String,
    /// HPA name; KEDA names it `keda-hpa-<scaledobject>`.
    pub hpa: Option<String>,
    /// ScaledObject name (keda.sh/v1alpha1).
    pub scaled_object: Option<String>,
}

/// Observes a Deployment, its HPA and ScaledObject through the Kubernetes API.
pub struct KubeSource {
    client: kube::Client,
    target: KubeTarget,
    record: std::sync::Mutex<ScalingRecord>,
    seen_events: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("target", &self.target)
            .finish()
    }
}

impl KubeSource {
    /// A source for an explicit API URL (no auth: `kubectl proxy`'s, or a closed port in the tests).
    pub fn for_url(url: &str, target: KubeTarget) -> Result<KubeSource, MonitorError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| MonitorError::Kube(format!("bad API URL {url:?}: {e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = target.namespace.clone();
        let client = crate::kube_api::bounded_client(config, MONITOR_CALL_TIMEOUT)
            .map_err(|e| MonitorError::Kube(e.to_string()))?;
        Ok(KubeSource::new(client, target))
    }

    fn new(client: kube::Client, target: KubeTarget) -> KubeSource {
        KubeSource {
            client,
            target,
            record: std::sync::Mutex::new(ScalingRecord::default()),
            seen_events: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// A source from a kubeconfig file, or inferred (in-cluster service account, then `$KUBECONFIG`/~/.kube/config).
    pub async fn infer(
        kubeconfig: Option<&std::path::Path>,
        target: KubeTarget,
    ) -> Result<KubeSource, MonitorError> {
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    MonitorError::Kube(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| MonitorError::Kube(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| MonitorError::Kube(e.to_string()))?,
        };
        let client = crate::kube_api::bounded_client(config, MONITOR_CALL_TIMEOUT)
            .map_err(|e| MonitorError::Kube(e.to_string()))?;
        Ok(KubeSource::new(client, target))
    }

    async fn observe_now(&self) -> Result<ReplicaSnapshot, MonitorError> {
        let ns = &self.target.namespace;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = deployments
            .get(&self.target.deployment)
            .await
            .map_err(|e| {
                MonitorError::Kube(format!("deployment {ns}/{}: {e}", self.target.deployment))
            })?;
        let selector = d
            .spec
            .selector
            .match_labels
            .as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        let spec_replicas = d.spec.replicas.map(to_u32);
        let status = d.status.unwrap_or_default();
        let mut snap = ReplicaSnapshot {
            desired: spec_replicas,
            current: Some(status.replicas.map(to_u32).unwrap_or(0)),
            ready: Some(status.ready_replicas.map(to_u32).unwrap_or(0)),
            detail: None,
            source: "kubernetes".into(),
        };
        let mut details = Vec::new();
        if let Some(hpa_name) = &self.target.hpa {
            let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), ns);
            match hpas.get_opt(hpa_name).await {
                Ok(Some(h)) => {
                    {
                        let mut r = self.record.lock().expect("record lock");
                        if let Some(t) = h.status.as_ref().and_then(|s| s.last_scale_time.as_ref())
                        {
                            let at = t.0.as_millisecond() as f64 / 1000.0;
                            if !r.scale_times_unix.contains(&at) {
                                r.scale_times_unix.push(at);
                            }
                        }
                        if r.settings_source.as_deref() != Some("ScaledObject spec") {
                            r.settings = Some(kube_history::settings_from_hpa(&h));
                            r.settings_source = Some("HPA spec".into());
                        }
                    }
                    if let Some(st) = h.status {
                        snap.desired = Some(to_u32(st.desired_replicas));
                        for c in st.conditions.unwrap_or_default() {
                            if c.status != "True" && c.type_ == "AbleToScale" {
                                details.push(format!("HPA {}={}", c.type_, c.status));
                            }
                            if c.type_ == "ScalingLimited" && c.status == "True" {
                                details
                                    .push(format!("HPA limited: {}", c.reason.unwrap_or_default()));
                            }
                        }
                    }
                }
                Ok(None) => details.push(format!("HPA {hpa_name} not found")),
                Err(e) => details.push(format!("HPA {hpa_name}: {e}")),
            }
        }
        if let Some(so_name) = &self.target.scaled_object {
            let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
            let ar = ApiResource::from_gvk(&gvk);
            let sos: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            match sos.get_opt(so_name).await {
                Ok(Some(so)) => {
                    if let Some(spec) = so.data.get("spec") {
                        let mut r = self.record.lock().expect("record lock");
                        r.settings = Some(kube_history::settings_from_scaled_object(spec));
                        r.settings_source = Some("ScaledObject spec".into());
                    }
                    let conditions = so
                        .data
                        .pointer("/status/conditions")
                        .and_then(|c| c.as_array())
                        .cloned()
                        .unwrap_or_default();
                    for c in conditions {
                        let t = c.get("type").and_then(|v| v.as_str()).unwrap_or("?");
                        let s = c.get("status").and_then(|v| v.as_str()).unwrap_or("?");
                        if matches!(t, "Active" | "Fallback" | "Ready" | "Paused") {
                            details.push(format!("{t}={s}"));
                        }
                    }
                }
                Ok(None) => details.push(format!("ScaledObject {so_name} not found")),
                Err(e) => details.push(format!("ScaledObject {so_name}: {e}")),
            }
        }
        if !details.is_empty() {
            snap.detail = Some(details.join(", "));
        }
        kube_history::read_history(
            &self.client,
            ns,
            selector,
            self.target.hpa.as_deref(),
            &self.record,
            &self.seen_events,
        )
        .await;
        Ok(snap)
    }
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl ReplicaSource for KubeSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(self.observe_now())
    }
    fn name(&self) -> String {
        format!(
            "kubernetes deployment {}/{}",
            self.target.namespace, self.target.deployment
        )
    }
    fn record(&self) -> Option<ScalingRecord> {
        Some(self.record.lock().expect("record lock").clone())
    }
}

/// Observes one ScaledObject through the scaler's `GET /explain` ([`contract::explain::Explain`]). The scaler knows the
/// metric values and targets, not the Deployment: `desired` is the largest replica count the ScaledObject's fresh
/// triggers ask for (the scaler's own `replicas_for_value`, the HPA formula of the autoscaler crate), `current` the
/// count the scaler last saw, and the trigger values are the detail. Other ScaledObjects the scaler serves are
/// ignored.
#[derive(Debug, Clone)]
pub struct ExplainSource {
    url: String,
    scaled_object: String,
    client: crate::client::SimpleClient,
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
            client: crate::client::SimpleClient::new(Duration::from_secs(3)),
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
    client: crate::client::SimpleClient,
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
            client: crate::client::SimpleClient::new(Duration::from_secs(3)),
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
