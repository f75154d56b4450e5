//! What a fault does ([`ChaosAction`]) and whom it hits ([`ChaosTarget`]), as written in a profile's `chaos:` list
//! and in the `--chaos` flag.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a fault does. Replica actions act on one consumer replica, scaler actions on the scaler process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosAction {
    /// SIGKILL a replica (a crash): its container restarts after a back-off.
    Kill,
    /// SIGTERM a replica (an eviction): it drains and a replacement starts at once.
    Terminate,
    /// SIGSTOP a replica for `duration`, then SIGCONT (a partition or a stalled node).
    Freeze,
    /// SIGKILL the scaler (the metric source dies); restarted after a back-off (or `duration`).
    KillScaler,
    /// SIGSTOP the scaler for `duration`, then SIGCONT.
    FreezeScaler,
    /// Stop the Kafka broker the lab started (SIGTERM, a clean shutdown) for `duration`, then start it again on the
    /// same port with the same data (the lab's Kafka scenario only).
    StopBroker,
    /// Cluster: delete a consumer pod (its ReplicaSet replaces it).
    DeletePod,
    /// Cluster: evict a consumer pod through the Eviction subresource (policy/v1): PodDisruptionBudgets apply.
    EvictPod,
    /// Cluster: mark a node unschedulable (uncordoned after `duration`, else at the end of the run).
    CordonNode,
    /// Cluster: cordon a node and evict every evictable pod on it, as `kubectl drain` (DaemonSet and mirror pods
    /// stay; PodDisruptionBudgets apply).
    DrainNode,
    /// Cluster: cut a pod off the network for `duration` with a deny-all NetworkPolicy selecting it.
    PartitionPod,
    /// Cluster: scale the scaler Deployment to 0 for `duration`, then back to its previous count.
    ScalerToZero,
}

/// What kind of thing an action hits (its targets must be of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Replica,
    Scaler,
    Pod,
    Node,
    Broker,
}

impl ChaosAction {
    pub const ALL: [ChaosAction; 12] = [
        ChaosAction::Kill,
        ChaosAction::Terminate,
        ChaosAction::Freeze,
        ChaosAction::KillScaler,
        ChaosAction::FreezeScaler,
        ChaosAction::StopBroker,
        ChaosAction::DeletePod,
        ChaosAction::EvictPod,
        ChaosAction::CordonNode,
        ChaosAction::DrainNode,
        ChaosAction::PartitionPod,
        ChaosAction::ScalerToZero,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChaosAction::Kill => "kill",
            ChaosAction::Terminate => "terminate",
            ChaosAction::Freeze => "freeze",
            ChaosAction::KillScaler => "kill-scaler",
            ChaosAction::FreezeScaler => "freeze-scaler",
            ChaosAction::StopBroker => "stop-broker",
            ChaosAction::DeletePod => "delete-pod",
            ChaosAction::EvictPod => "evict-pod",
            ChaosAction::CordonNode => "cordon-node",
            ChaosAction::DrainNode => "drain-node",
            ChaosAction::PartitionPod => "partition-pod",
            ChaosAction::ScalerToZero => "scaler-to-zero",
        }
    }

    pub(crate) fn target_kind(self) -> TargetKind {
        match self {
            ChaosAction::Kill | ChaosAction::Terminate | ChaosAction::Freeze => TargetKind::Replica,
            ChaosAction::KillScaler | ChaosAction::FreezeScaler | ChaosAction::ScalerToZero => {
                TargetKind::Scaler
            }
            ChaosAction::DeletePod | ChaosAction::EvictPod | ChaosAction::PartitionPod => {
                TargetKind::Pod
            }
            ChaosAction::CordonNode | ChaosAction::DrainNode => TargetKind::Node,
            ChaosAction::StopBroker => TargetKind::Broker,
        }
    }

    pub fn parse(text: &str) -> Option<ChaosAction> {
        ChaosAction::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether the action acts on the scaler (else on a replica).
    pub fn on_scaler(self) -> bool {
        self.target_kind() == TargetKind::Scaler
    }

    /// Whether the action acts on the Kafka broker.
    pub fn on_broker(self) -> bool {
        self.target_kind() == TargetKind::Broker
    }

    /// The target used when none is given.
    pub fn default_target(self) -> ChaosTarget {
        match self.target_kind() {
            TargetKind::Replica => ChaosTarget::Replica,
            TargetKind::Scaler => ChaosTarget::Scaler,
            TargetKind::Pod => ChaosTarget::Pod,
            TargetKind::Node => ChaosTarget::Node,
            TargetKind::Broker => ChaosTarget::Broker,
        }
    }

    pub fn allowed() -> String {
        ChaosAction::ALL.map(ChaosAction::as_str).join(", ")
    }
}

impl fmt::Display for ChaosAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChaosTarget {
    /// The oldest ready replica at the time of the fault.
    Replica,
    /// `replica-N`: the replica named `consumer-N`.
    ReplicaN(u32),
    Scaler,
    /// Cluster: the oldest ready consumer pod at the time of the fault.
    Pod,
    /// `pod/NAME`: that pod of the consumer's namespace.
    PodNamed(String),
    /// Cluster: the node of the oldest ready consumer pod.
    Node,
    /// `node/NAME`.
    NodeNamed(String),
    /// The Kafka broker the lab started.
    Broker,
}

/// The accepted target forms, for error messages.
pub const TARGETS_ALLOWED: &str =
    "replica, replica-N (N >= 1), scaler, broker, pod, pod/NAME, node, node/NAME";

/// A Kubernetes object name (RFC 1123 subdomain): what `pod/NAME` and `node/NAME` take.
fn object_name(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| text.to_string())
}

impl ChaosTarget {
    pub fn parse(text: &str) -> Option<ChaosTarget> {
        match text {
            "replica" => Some(ChaosTarget::Replica),
            "scaler" => Some(ChaosTarget::Scaler),
            "pod" => Some(ChaosTarget::Pod),
            "node" => Some(ChaosTarget::Node),
            "broker" => Some(ChaosTarget::Broker),
            _ => {
                if let Some(name) = text.strip_prefix("pod/") {
                    return object_name(name).map(ChaosTarget::PodNamed);
                }
                if let Some(name) = text.strip_prefix("node/") {
                    return object_name(name).map(ChaosTarget::NodeNamed);
                }
                text.strip_prefix("replica-")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n >= 1)
                    .map(ChaosTarget::ReplicaN)
            }
        }
    }

    pub(crate) fn kind(&self) -> TargetKind {
        match self {
            ChaosTarget::Replica | ChaosTarget::ReplicaN(_) => TargetKind::Replica,
            ChaosTarget::Scaler => TargetKind::Scaler,
            ChaosTarget::Pod | ChaosTarget::PodNamed(_) => TargetKind::Pod,
            ChaosTarget::Node | ChaosTarget::NodeNamed(_) => TargetKind::Node,
            ChaosTarget::Broker => TargetKind::Broker,
        }
    }
}

impl fmt::Display for ChaosTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosTarget::Replica => f.write_str("replica"),
            ChaosTarget::ReplicaN(n) => write!(f, "replica-{n}"),
            ChaosTarget::Scaler => f.write_str("scaler"),
            ChaosTarget::Pod => f.write_str("pod"),
            ChaosTarget::PodNamed(n) => write!(f, "pod/{n}"),
            ChaosTarget::Node => f.write_str("node"),
            ChaosTarget::NodeNamed(n) => write!(f, "node/{n}"),
            ChaosTarget::Broker => f.write_str("broker"),
        }
    }
}

impl Serialize for ChaosTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChaosTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ChaosTarget::parse(text.trim()).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid target {text:?}; allowed: {TARGETS_ALLOWED}"
            ))
        })
    }
}
