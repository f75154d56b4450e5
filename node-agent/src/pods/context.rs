//! What every pod worker shares: the API client, the settings, the image mapping, the node's addresses, the
//! Services (for the Service variables), the event recorder, and the registry the kubelet API reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;

use super::objects::ApiObjects;
use super::sandbox::Ipam;
use crate::cgroup::{Group, Hierarchy};
use crate::config::Config;
use crate::images::Images;

/// The agent's shared state.
pub struct Agent {
    pub client: Client,
    pub config: Config,
    pub images: Images,
    pub ipam: Ipam,
    /// Cgroups are made under here (beside the agent's own group).
    pub hierarchy: Hierarchy,
    pub services: Store<Service>,
    pub recorder: Recorder,
    pub objects: ApiObjects,
    /// This binary (the shim is one of its modes).
    pub exe: PathBuf,
    pub node_cpu: f64,
    pub node_memory: u64,
    pub registry: Registry,
    /// The node's address, as text (what `status.hostIP` is).
    pub host_ip: String,
}

impl Agent {
    pub fn reporter(node: &str) -> Reporter {
        Reporter {
            controller: "node-agent".into(),
            instance: Some(node.to_string()),
        }
    }

    /// Posts an event about `pod`; a failure to post is logged (the event is lost, the pod is not).
    pub async fn event(&self, pod: &Pod, warning: bool, reason: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(pod = ?pod.metadata.name, reason, "posting an event: {e}");
        }
    }

    /// The cgroup of a pod (`relative` under the project's directory), or of one of its containers.
    pub fn pod_group(&self, uid: &str, container: Option<&str>) -> Group {
        let mut path = PathBuf::from(self.config.names.cgroup_dir())
            .join("pods")
            .join(uid);
        if let Some(c) = container {
            path.push(c);
        }
        self.hierarchy.group(&path)
    }

    pub fn pod_state_dir(&self, uid: &str) -> PathBuf {
        self.config.args.state_dir.join("pods").join(uid)
    }

    pub fn pod_run_dir(&self, uid: &str) -> PathBuf {
        self.config.args.run_dir.join("pods").join(uid)
    }

    pub fn logs_root(&self) -> PathBuf {
        self.config.args.state_dir.join("logs")
    }
}

/// One container as the kubelet API sees it.
#[derive(Debug, Clone)]
pub struct ContainerEntry {
    pub restart_count: u32,
    pub running: bool,
    pub group: Group,
    /// Seconds since the epoch.
    pub started_at: Option<f64>,
}

/// One pod as the kubelet API sees it.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub uid: String,
    /// The pod's labels now (NetworkPolicies select on them), and its veth on the node's bridge.
    pub labels: BTreeMap<String, String>,
    pub veth: String,
    pub log_dir: PathBuf,
    pub containers: BTreeMap<String, ContainerEntry>,
    pub group: Group,
}

/// The pods on this node by namespace and name, for `containerLogs` and `/metrics/resource`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pods: Arc<Mutex<BTreeMap<(String, String), PodEntry>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), PodEntry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, namespace: &str, name: &str, entry: PodEntry) {
        self.lock()
            .insert((namespace.to_string(), name.to_string()), entry);
    }

    pub fn update_container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        entry: ContainerEntry,
    ) {
        if let Some(pod) = self
            .lock()
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            pod.containers.insert(container.to_string(), entry);
        }
    }

    pub fn set_labels(&self, namespace: &str, name: &str, labels: BTreeMap<String, String>) {
        if let Some(pod) = self
            .lock()
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            pod.labels = labels;
        }
    }

    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.lock();
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|p| p.uid == uid) {
            pods.remove(&key);
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<((String, String), PodEntry)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
