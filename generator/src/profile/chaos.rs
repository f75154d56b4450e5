//! A profile's `chaos:` list: faults to inject at given times of the load (`at`), what to do (`action`), to whom
//! (`target`) and for how long (`duration`). Written once here for the profile YAML and the lab's `--chaos` flag
//! (`at=20s,action=kill,target=replica`), so both take the same fields with the same checks; the lab carries them
//! out. Times are profile times: `--time-scale` scales them with the stages.

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
    /// same port with the same data (the Kafka scenario only).
    StopBroker,
}

impl ChaosAction {
    pub const ALL: [ChaosAction; 6] = [
        ChaosAction::Kill,
        ChaosAction::Terminate,
        ChaosAction::Freeze,
        ChaosAction::KillScaler,
        ChaosAction::FreezeScaler,
        ChaosAction::StopBroker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChaosAction::Kill => "kill",
            ChaosAction::Terminate => "terminate",
            ChaosAction::Freeze => "freeze",
            ChaosAction::KillScaler => "kill-scaler",
            ChaosAction::FreezeScaler => "freeze-scaler",
            ChaosAction::StopBroker => "stop-broker",
        }
    }

    pub fn parse(text: &str) -> Option<ChaosAction> {
        ChaosAction::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether the action acts on the scaler (else on a replica).
    pub fn on_scaler(self) -> bool {
        matches!(self, ChaosAction::KillScaler | ChaosAction::FreezeScaler)
    }

    /// Whether the action acts on the Kafka broker.
    pub fn on_broker(self) -> bool {
        self == ChaosAction::StopBroker
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosTarget {
    /// The oldest ready replica at the time of the fault.
    Replica,
    /// `replica-N`: the replica named `consumer-N`.
    ReplicaN(u32),
    Scaler,
    /// The Kafka broker the lab started.
    Broker,
}

impl ChaosTarget {
    pub fn parse(text: &str) -> Option<ChaosTarget> {
        match text {
            "replica" => Some(ChaosTarget::Replica),
            "scaler" => Some(ChaosTarget::Scaler),
            "broker" => Some(ChaosTarget::Broker),
            _ => text
                .strip_prefix("replica-")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n >= 1)
                .map(ChaosTarget::ReplicaN),
        }
    }
}

impl fmt::Display for ChaosTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosTarget::Replica => f.write_str("replica"),
            ChaosTarget::ReplicaN(n) => write!(f, "replica-{n}"),
            ChaosTarget::Scaler => f.write_str("scaler"),
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
                "invalid target {text:?}; allowed: replica, replica-N (N >= 1), scaler, broker"
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
    /// Default: `replica` for replica actions, `scaler` for scaler actions, `broker` for `stop-broker`.
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
        self.target.unwrap_or(if self.action.on_broker() {
            ChaosTarget::Broker
        } else if self.action.on_scaler() {
            ChaosTarget::Scaler
        } else {
            ChaosTarget::Replica
        })
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
                "target" => target = Some(ChaosTarget::parse(value).ok_or_else(|| {
                    bad(
                        "target",
                        format!(
                            "invalid target {value:?}; allowed: replica, replica-N (N >= 1), scaler, broker"
                        ),
                    )
                })?),
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
        if self.action.on_broker() != (target == ChaosTarget::Broker) {
            let allowed = if self.action.on_broker() {
                "broker"
            } else if self.action.on_scaler() {
                "scaler"
            } else {
                "replica or replica-N"
            };
            return Err((
                "target".into(),
                format!(
                    "{target} does not fit action {}; allowed: {allowed}",
                    self.action
                ),
            ));
        }
        if self.action.on_scaler() != (target == ChaosTarget::Scaler) {
            let allowed = if self.action.on_scaler() {
                "scaler"
            } else {
                "replica or replica-N"
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
}
