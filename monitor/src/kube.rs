//! The Kubernetes API as a replica source (kube-rs): the Deployment's counts, the HPA's desired figure, the
//! ScaledObject, and through [`crate::kube_history`] the decisions and pod lives behind the scaling analysis.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::{MonitorError, ReplicaSnapshot, ReplicaSource, ScalingRecord};

/// Each Kubernetes call of the monitor: an observation is due every poll, and a slow API must not hold it.
const MONITOR_CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
                            r.settings = Some(crate::kube_history::settings_from_hpa(&h));
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
                        r.settings = Some(crate::kube_history::settings_from_scaled_object(spec));
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
        crate::kube_history::read_history(
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
