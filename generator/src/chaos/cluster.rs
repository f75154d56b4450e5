//! The Kubernetes calls behind the cluster faults, through kube-rs: finding the consumer's pods (by its Deployment's
//! selector, as kubectl does) and nodes, deleting and evicting pods (policy/v1 Eviction, so PodDisruptionBudgets
//! apply), cordoning, partitioning a pod with a deny-all NetworkPolicy, scaling the scaler through its scale
//! subresource. Every API error becomes an [`ApiFailure`] that keeps the API's own Status message (a 403 names the
//! verb and resource that were refused), so a fault is reported, never a panic.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The label a partitioned pod gets; the partition's NetworkPolicy selects it.
pub const PARTITION_LABEL: &str = "autoscaling-lab/chaos-partition";

/// Why an API call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiFailure {
    /// 403: RBAC refused it; the API's message names the verb and resource.
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// 429 on an eviction: a PodDisruptionBudget allows no disruption now.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Other(String),
}

impl From<kube::Error> for ApiFailure {
    fn from(e: kube::Error) -> ApiFailure {
        match e {
            kube::Error::Api(s) => {
                let mut message = if s.message.is_empty() {
                    format!("HTTP {} {}", s.code, s.reason)
                } else {
                    s.message.clone()
                };
                // The causes say which budget refused an eviction, and how many healthy pods it counted.
                let causes: Vec<&str> = s
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .map(|c| c.message.as_str())
                    .filter(|m| !m.is_empty())
                    .collect();
                if !causes.is_empty() {
                    message.push_str(&format!(" ({})", causes.join("; ")));
                }
                match s.code {
                    403 => ApiFailure::Denied(message),
                    404 => ApiFailure::NotFound(message),
                    429 => ApiFailure::TooManyRequests(message),
                    code => ApiFailure::Other(format!("HTTP {code}: {message}")),
                }
            }
            other => ApiFailure::Other(format!("Kubernetes API: {other}")),
        }
    }
}

/// Where the faults act: the consumer's namespace and Deployment, the scaler Deployment.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub namespace: String,
    /// The consumer Deployment, whose selector finds its pods.
    pub deployment: String,
    /// The scaler Deployment `scaler-to-zero` scales.
    pub scaler: String,
    /// The consumer pods' label selector; `None`: read from the Deployment's `spec.selector`.
    pub selector: Option<String>,
}

/// A Kubernetes API client bound to a [`ClusterConfig`].
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    pub config: ClusterConfig,
}

/// A pod as the faults see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    pub ready: bool,
}

impl PodInfo {
    fn of(pod: &Pod) -> PodInfo {
        PodInfo {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            ready: is_ready(pod),
        }
    }

    /// `pod/consumer-abc on node/n1`.
    pub fn describe(&self) -> String {
        match &self.node {
            Some(n) => format!("pod/{} on node/{n}", self.name),
            None => format!("pod/{}", self.name),
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A label selector in the list-query form (`app=consumer,tier in (web)`), as kubectl writes it.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

impl Cluster {
    pub fn new(client: kube::Client, config: ClusterConfig) -> Cluster {
        Cluster { client, config }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// The consumer pods' selector: the flag's, else the Deployment's `spec.selector`.
    pub async fn selector(&self) -> Result<String, ApiFailure> {
        if let Some(s) = &self.config.selector {
            return Ok(s.clone());
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let d = api.get(&self.config.deployment).await?;
        let text = selector_text(&d.spec.selector);
        if text.is_empty() {
            return Err(ApiFailure::Other(format!(
                "deployment {} has an empty selector; give --chaos-selector",
                self.config.deployment
            )));
        }
        Ok(text)
    }

    /// The consumer's pods, oldest first (by creation, then name).
    pub async fn consumer_pods(&self, selector: &str) -> Result<Vec<PodInfo>, ApiFailure> {
        let mut list: Vec<Pod> = self
            .pods()
            .list(&ListParams::default().labels(selector))
            .await?
            .items;
        list.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
        Ok(list.iter().map(PodInfo::of).collect())
    }

    /// The oldest ready consumer pod.
    pub async fn oldest_ready(&self, selector: &str) -> Result<PodInfo, ApiFailure> {
        self.consumer_pods(selector)
            .await?
            .into_iter()
            .find(|p| p.ready)
            .ok_or_else(|| ApiFailure::NotFound(format!("no ready pod matches {selector}")))
    }

    pub async fn pod(&self, name: &str) -> Result<PodInfo, ApiFailure> {
        Ok(PodInfo::of(&self.pods().get(name).await?))
    }

    pub async fn delete_pod(&self, name: &str) -> Result<(), ApiFailure> {
        self.pods().delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// One eviction through the policy/v1 Eviction subresource (a 429 when a disruption budget forbids it).
    async fn evict_once(&self, namespace: &str, name: &str) -> Result<(), ApiFailure> {
        let body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        });
        let request = http::Request::post(format!(
            "/api/v1/namespaces/{namespace}/pods/{name}/eviction"
        ))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(|e| ApiFailure::Other(format!("eviction request: {e}")))?;
        self.client
            .request::<serde_json::Value>(request)
            .await
            .map(|_| ())
            .map_err(ApiFailure::from)
    }

    /// Evict, retrying a 429 (a PodDisruptionBudget) with back-off until `deadline`, as kubectl drain does, but
    /// never past it. Returns the retries made; the error carries them too.
    pub async fn evict(
        &self,
        namespace: &str,
        name: &str,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<u32, (ApiFailure, u32)> {
        let mut retries = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.evict_once(namespace, name).await {
                Ok(()) => return Ok(retries),
                Err(ApiFailure::TooManyRequests(message)) => {
                    let now = Instant::now();
                    if now >= deadline || stop.is_cancelled() {
                        return Err((ApiFailure::TooManyRequests(message), retries));
                    }
                    let pause = backoff.min(deadline - now);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => return Err((ApiFailure::TooManyRequests(message), retries)),
                    }
                    retries += 1;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(other) => return Err((other, retries)),
            }
        }
    }

    /// Cordon; returns whether the node was already unschedulable (then it is not uncordoned afterwards).
    pub async fn cordon(&self, node: &str) -> Result<bool, ApiFailure> {
        let was = self
            .nodes()
            .get(node)
            .await?
            .spec
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !was {
            self.nodes().cordon(node).await?;
        }
        Ok(was)
    }

    pub async fn uncordon(&self, node: &str) -> Result<(), ApiFailure> {
        self.nodes().uncordon(node).await?;
        Ok(())
    }

    /// The pods `kubectl drain` would evict from `node`: all namespaces, minus DaemonSet pods (their controller
    /// ignores cordons) and mirror pods (the kubelet owns them), minus those already going.
    pub async fn drainable(&self, node: &str) -> Result<Vec<PodInfo>, ApiFailure> {
        let all: Api<Pod> = Api::all(self.client.clone());
        let list = all
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        Ok(list
            .items
            .iter()
            .filter(|p| {
                let daemon = p
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
                let mirror = p
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
                !daemon && !mirror && p.metadata.deletion_timestamp.is_none()
            })
            .map(PodInfo::of)
            .collect())
    }

    /// Cut `pod` off: label it, then a NetworkPolicy selecting that label with both policy types and no rules
    /// (deny all ingress and egress). Returns the policy's name.
    pub async fn partition(&self, pod: &str) -> Result<String, ApiFailure> {
        let value: String = pod.chars().take(63).collect();
        let value = value.trim_end_matches(['-', '.']).to_string();
        let patch = json!({"metadata": {"labels": {PARTITION_LABEL: value}}});
        self.pods()
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let name: String = format!("chaos-partition-{pod}").chars().take(253).collect();
        let policy: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "generator-chaos"}},
            "spec": {
                "podSelector": {"matchLabels": {PARTITION_LABEL: value}},
                "policyTypes": ["Ingress", "Egress"]
            }
        }))
        .map_err(|e| ApiFailure::Other(format!("network policy: {e}")))?;
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &self.config.namespace);
        api.create(&PostParams::default(), &policy).await?;
        Ok(name)
    }

    /// Undo [`Cluster::partition`]: delete the policy, then the label (a pod already gone is fine).
    pub async fn heal(&self, pod: &str, policy: &str) -> Result<(), ApiFailure> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &self.config.namespace);
        match api.delete(policy, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) => match ApiFailure::from(e) {
                ApiFailure::NotFound(_) => {}
                other => return Err(other),
            },
        }
        self.unlabel(pod).await
    }

    /// Take the partition label off `pod` (a pod already gone is fine).
    pub async fn unlabel(&self, pod: &str) -> Result<(), ApiFailure> {
        let patch = json!({"metadata": {"labels": {PARTITION_LABEL: null}}});
        match self
            .pods()
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match ApiFailure::from(e) {
                ApiFailure::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn scaler(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Scale the scaler to `replicas` through its scale subresource; returns the count before.
    pub async fn scale_scaler(&self, replicas: i32) -> Result<i32, ApiFailure> {
        let name = &self.config.scaler;
        let before = self
            .scaler()
            .get_scale(name)
            .await?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        let patch = json!({"spec": {"replicas": replicas}});
        self.scaler()
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    #[test]
    fn selectors_read_as_kubectl_writes_them() {
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "app".to_string(),
                "consumer".to_string(),
            )])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["web".into(), "api".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_text(&s), "app=consumer,tier in (web,api),!canary");
    }

    #[test]
    fn api_errors_keep_the_status_message() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure(message, "Forbidden").with_code(code),
            ))
        };
        assert_eq!(
            ApiFailure::from(status(403, "pods \"a\" is forbidden")),
            ApiFailure::Denied("pods \"a\" is forbidden".into())
        );
        assert!(matches!(
            ApiFailure::from(status(429, "budget")),
            ApiFailure::TooManyRequests(_)
        ));
        assert!(matches!(
            ApiFailure::from(status(404, "gone")),
            ApiFailure::NotFound(_)
        ));
        assert!(
            ApiFailure::from(status(500, "boom"))
                .to_string()
                .contains("HTTP 500")
        );
    }
}
