//! One scheduled fault ([`ChaosSpec`]): its fields, the `--chaos` flag's form and the checks both forms share.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::{ChaosAction, ChaosTarget, TARGETS_ALLOWED, TargetKind};

/// A `--chaos` flag that could not be read: the field at fault (`--chaos at`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct FlagError {
    pub field: String,
    pub reason: String,
}

/// One scheduled fault, as written in the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    /// When, from the start of the load.
    #[serde(with = "contract::duration_text")]
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
        with = "contract::duration_text::option",
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
    pub fn parse_flag(text: &str) -> Result<ChaosSpec, FlagError> {
        let bad = |field: &str, reason: String| FlagError {
            field: format!("--chaos {field}"),
            reason,
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
        assert_eq!(spec.action.place(), crate::ChaosPlace::Cluster);
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
