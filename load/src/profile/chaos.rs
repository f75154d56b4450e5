//! A profile's `chaos:` list: faults to inject at given times of the load (`at`), what to do (`action`), to whom
//! (`target`) and for how long (`duration`). Written once here for the profile YAML and the lab's `--chaos` flag
//! (`at=20s,action=kill,target=replica`), so both take the same fields with the same checks; the lab carries them
//! out. Times are profile times: `--time-scale` scales them with the stages.
//!
//! Actions run in one of two places ([`super::ChaosPlace`], in `chaos_place`): lab actions act on the lab's own
//! processes (the lab carries them out), cluster actions act on Kubernetes objects (the generator carries them out
//! through the API, with the load-generator component's RBAC). Each side refuses the other's with a usage error
//! naming the equivalent.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProfileError;

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
enum TargetKind {
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

    fn target_kind(self) -> TargetKind {
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

    fn kind(&self) -> TargetKind {
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

/// One scheduled fault, as written in the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    /// When, from the start of the load.
    #[serde(with = "super::duration_text")]
    pub at: Duration,
    pub action: ChaosAction,
    /// Default: `replica` for replica actions, `scaler` for scaler actions, `broker` for `stop-broker`, `pod` for
    /// pod actions, `node` for node actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ChaosTarget>,
    /// `freeze`/`freeze-scaler`: how long the process stays stopped (required); `stop-broker`: how long the broker
    /// stays down (required). `kill`/`kill-scaler`: the restart
    /// back-off (default: the lab's 10 s). Not allowed for `terminate` (the replacement starts at once).
    #[serde(
        default,
        with = "super::duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
}

impl ChaosSpec {
    /// The target in force: the given one, else the action's default.
    pub fn target(&self) -> ChaosTarget {
        self.target
            .clone()
            .unwrap_or_else(|| self.action.default_target())
    }

    /// `kill replica-2 at 20s for 5s`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {} at {}",
            self.action,
            self.target(),
            humantime::format_duration(self.at)
        );
        if let Some(d) = self.duration {
            text.push_str(&format!(" for {}", humantime::format_duration(d)));
        }
        text
    }

    /// Parse the `--chaos` flag's form: `at=20s,action=kill,target=replica,duration=10s` (the YAML's fields).
    pub fn parse_flag(text: &str) -> Result<ChaosSpec, ProfileError> {
        let bad = |field: &str, reason: String| ProfileError::Invalid {
            field: format!("--chaos {field}"),
            reason,
            line: None,
        };
        let (mut at, mut action, mut target, mut duration) = (None, None, None, None);
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(
                    part,
                    "expected key=value (keys: at, action, target, duration)".into(),
                ));
            };
            let value = value.trim();
            let duration_of = |field: &str| {
                humantime::parse_duration(value).map_err(|e| {
                    bad(
                        field,
                        format!("invalid duration {value:?} ({e}); write e.g. 20s, 1m30s"),
                    )
                })
            };
            match key.trim() {
                "at" => at = Some(duration_of("at")?),
                "action" => {
                    action = Some(ChaosAction::parse(value).ok_or_else(|| {
                        bad(
                            "action",
                            format!(
                                "unknown action {value:?}; allowed: {}",
                                ChaosAction::allowed()
                            ),
                        )
                    })?)
                }
                "target" => {
                    target = Some(ChaosTarget::parse(value).ok_or_else(|| {
                        bad(
                            "target",
                            format!("invalid target {value:?}; allowed: {TARGETS_ALLOWED}"),
                        )
                    })?)
                }
                "duration" => duration = Some(duration_of("duration")?),
                other => {
                    return Err(bad(
                        other,
                        "unknown key; allowed: at, action, target, duration".into(),
                    ));
                }
            }
        }
        let spec = ChaosSpec {
            at: at.ok_or_else(|| bad("at", "is required, e.g. at=20s".into()))?,
            action: action.ok_or_else(|| {
                bad(
                    "action",
                    format!("is required; allowed: {}", ChaosAction::allowed()),
                )
            })?,
            target,
            duration,
        };
        spec.check(None)
            .map_err(|(field, reason)| bad(&field, reason))?;
        Ok(spec)
    }

    /// The checks that need no YAML position: the target fits the action, the duration is given where needed and
    /// only there, and the fault falls inside the load (`load`, when known). Errors are (field, reason).
    pub fn check(&self, load: Option<Duration>) -> Result<(), (String, String)> {
        let target = self.target();
        if self.action.target_kind() != target.kind() {
            let allowed = match self.action.target_kind() {
                TargetKind::Replica => "replica or replica-N",
                TargetKind::Scaler => "scaler",
                TargetKind::Pod => "pod or pod/NAME",
                TargetKind::Node => "node or node/NAME",
                TargetKind::Broker => "broker",
            };
            return Err((
                "target".into(),
                format!(
                    "{target} does not fit action {}; allowed: {allowed}",
                    self.action
                ),
            ));
        }
        match (self.action, self.duration) {
            (ChaosAction::StopBroker, None) => {
                return Err((
                    "duration".into(),
                    "is required for stop-broker: how long the broker stays down".into(),
                ));
            }
            (ChaosAction::Freeze | ChaosAction::FreezeScaler, None) => {
                return Err((
                    "duration".into(),
                    format!(
                        "is required for {}: how long the process stays stopped",
                        self.action
                    ),
                ));
            }
            (ChaosAction::PartitionPod | ChaosAction::ScalerToZero, None) => {
                return Err((
                    "duration".into(),
                    format!(
                        "is required for {}: how long until it is undone",
                        self.action
                    ),
                ));
            }
            (ChaosAction::DeletePod | ChaosAction::EvictPod, Some(_)) => {
                return Err((
                    "duration".into(),
                    format!(
                        "is not allowed for {}: the ReplicaSet replaces the pod at once",
                        self.action
                    ),
                ));
            }
            (ChaosAction::Terminate, Some(_)) => {
                return Err((
                    "duration".into(),
                    "is not allowed for terminate: the replacement starts at once".into(),
                ));
            }
            (_, Some(d)) if d.is_zero() => {
                return Err(("duration".into(), "must be > 0".into()));
            }
            _ => {}
        }
        if let Some(load) = load
            && self.at >= load
        {
            return Err((
                "at".into(),
                format!(
                    "{} is not inside the load ({}): a fault after it cannot be measured",
                    humantime::format_duration(self.at),
                    humantime::format_duration(load)
                ),
            ));
        }
        Ok(())
    }

    /// `at` and `duration` multiplied by `factor` (the profile's time scale).
    pub fn scale_time(&self, factor: f64) -> ChaosSpec {
        let scale = |d: Duration| d.mul_f64(factor.max(0.0));
        ChaosSpec {
            at: scale(self.at),
            duration: self
                .duration
                .map(|d| scale(d).max(Duration::from_millis(1))),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    fn demo_with(chaos: &str) -> String {
        format!(
            "name: x\nstages:\n  - duration: 30s\n    rate: 5\nrequests:\n  - path: /load/io\nchaos:\n{chaos}"
        )
    }

    #[test]
    fn a_chaos_list_parses_with_defaults() {
        let p = Profile::from_yaml(&demo_with(
            "  - at: 10s\n    action: kill\n  - {at: 12s, action: freeze, target: replica-2, duration: 3s}\n  - at: 15s\n    action: kill-scaler\n",
        ))
        .unwrap();
        assert_eq!(p.chaos.len(), 3);
        assert_eq!(p.chaos[0].target(), ChaosTarget::Replica);
        assert_eq!(p.chaos[1].target(), ChaosTarget::ReplicaN(2));
        assert_eq!(p.chaos[1].duration, Some(Duration::from_secs(3)));
        assert_eq!(p.chaos[2].target(), ChaosTarget::Scaler);
        assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
        let scaled = p.scale_time(0.5);
        assert_eq!(scaled.chaos[1].at, Duration::from_secs(6));
        assert_eq!(scaled.chaos[1].duration, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_chaos_fields_are_named_with_their_line() {
        let err = |chaos: &str| {
            Profile::from_yaml(&demo_with(chaos))
                .unwrap_err()
                .to_string()
        };
        let e = err("  - at: 10s\n    action: explode\n");
        assert!(e.contains("explode") && e.contains("kill-scaler"), "{e}");
        let e = err("  - at: soon\n    action: kill\n");
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = err("  - at: 40s\n    action: kill\n");
        assert!(
            e.contains("chaos[0].at") && e.contains("line 8") && e.contains("not inside the load"),
            "{e}"
        );
        let e = err("  - at: 10s\n    action: kill\n  - at: 11s\n    action: freeze\n");
        assert!(
            e.contains("chaos[1].duration") && e.contains("line 10") && e.contains("required"),
            "{e}"
        );
        let e = err("  - {at: 10s, action: terminate, duration: 2s}\n");
        assert!(
            e.contains("chaos[0].duration") && e.contains("not allowed"),
            "{e}"
        );
        let e = err("  - {at: 10s, action: kill-scaler, target: replica}\n");
        assert!(
            e.contains("chaos[0].target") && e.contains("does not fit"),
            "{e}"
        );
        let e = err("  - {at: 10s, action: kill, target: pod-1}\n");
        assert!(e.contains("invalid target \"pod-1\""), "{e}");
        let e = err("  - {at: 10s, action: freeze, duration: 0s}\n");
        assert!(e.contains("chaos[0].duration") && e.contains("> 0"), "{e}");
    }

    #[test]
    fn stop_broker_needs_a_duration_and_fits_only_the_broker() {
        let spec = ChaosSpec::parse_flag("at=2s,action=stop-broker,duration=3s").unwrap();
        assert_eq!(spec.action, ChaosAction::StopBroker);
        assert_eq!(spec.target(), ChaosTarget::Broker, "the default target");
        assert_eq!(spec.describe(), "stop-broker broker at 2s for 3s");
        assert!(ChaosAction::allowed().contains("stop-broker"));
        for (text, field, wanted) in [
            (
                "at=2s,action=stop-broker",
                "--chaos duration",
                "required for stop-broker",
            ),
            (
                "at=2s,action=stop-broker,duration=0s",
                "--chaos duration",
                "> 0",
            ),
            (
                "at=2s,action=stop-broker,target=scaler,duration=3s",
                "--chaos target",
                "allowed: broker",
            ),
            (
                "at=2s,action=kill,target=broker",
                "--chaos target",
                "allowed: replica or replica-N",
            ),
            (
                "at=2s,action=kill-scaler,target=broker",
                "--chaos target",
                "allowed: scaler",
            ),
            (
                "at=2s,action=stop-broker,target=brokers,duration=3s",
                "--chaos target",
                "scaler, broker",
            ),
        ] {
            let e = ChaosSpec::parse_flag(text).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(wanted), "{text}: {e}");
        }
        let yaml = |chaos: &str| Profile::from_yaml(&demo_with(chaos));
        let p = yaml("  - {at: 5s, action: stop-broker, duration: 4s}\n").unwrap();
        assert_eq!(p.chaos[0].target(), ChaosTarget::Broker);
        assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
        let e = yaml("  - at: 5s\n    action: stop-broker\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chaos[0].duration") && e.contains("line 8") && e.contains("stays down"),
            "{e}"
        );
        let e = yaml("  - {at: 5s, action: freeze, target: broker, duration: 1s}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chaos[0].target") && e.contains("does not fit"),
            "{e}"
        );
    }

    #[test]
    fn the_flag_takes_the_same_fields() {
        let spec =
            ChaosSpec::parse_flag("at=20s,action=freeze,target=replica-3,duration=5s").unwrap();
        assert_eq!(spec.at, Duration::from_secs(20));
        assert_eq!(spec.action, ChaosAction::Freeze);
        assert_eq!(spec.target(), ChaosTarget::ReplicaN(3));
        assert_eq!(spec.describe(), "freeze replica-3 at 20s for 5s");
        for (text, wanted) in [
            ("at=20s", "action"),
            ("action=kill", "at"),
            ("at=2x,action=kill", "invalid duration"),
            ("at=2s,action=nap", "unknown action"),
            ("at=2s,action=kill,who=me", "unknown key"),
            ("at=2s,action=freeze", "required"),
            ("at=2s,action=kill,target=replica-0", "invalid target"),
        ] {
            let e = ChaosSpec::parse_flag(text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }

    #[test]
    fn cluster_actions_take_pods_nodes_and_the_scaler() {
        let spec =
            ChaosSpec::parse_flag("at=2s,action=evict-pod,target=pod/consumer-7f9-abc").unwrap();
        assert_eq!(
            spec.target(),
            ChaosTarget::PodNamed("consumer-7f9-abc".into())
        );
        assert_eq!(spec.action.place(), crate::profile::ChaosPlace::Cluster);
        assert_eq!(
            ChaosSpec::parse_flag("at=2s,action=drain-node")
                .unwrap()
                .target(),
            ChaosTarget::Node
        );
        assert_eq!(
            ChaosSpec::parse_flag("at=2s,action=cordon-node,target=node/n-1,duration=3s")
                .unwrap()
                .describe(),
            "cordon-node node/n-1 at 2s for 3s"
        );
        assert_eq!(
            ChaosSpec::parse_flag("at=2s,action=scaler-to-zero,duration=5s")
                .unwrap()
                .target(),
            ChaosTarget::Scaler
        );
        for (text, wanted) in [
            ("at=2s,action=partition-pod", "required"),
            ("at=2s,action=scaler-to-zero", "required"),
            ("at=2s,action=delete-pod,duration=3s", "not allowed"),
            ("at=2s,action=delete-pod,target=node", "does not fit"),
            ("at=2s,action=kill,target=pod", "does not fit"),
            (
                "at=2s,action=delete-pod,target=pod/Bad_Name",
                "invalid target",
            ),
            ("at=2s,action=drain-node,target=node/", "invalid target"),
        ] {
            let e = ChaosSpec::parse_flag(text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }
}
