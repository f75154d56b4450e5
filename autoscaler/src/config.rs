//! The ScaledObject with every default resolved (KEDA's and the HPA's) into plain numbers and
//! [`Duration`]s: what the [`crate::Controller`] runs on. [`ScalingConfig::time_scaled`] shrinks every
//! duration by one factor for `lab --time-scale`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::SpecError;
use crate::spec::{
    Behavior, FallbackBehavior, MetricType, PolicyKind, ScaledObject, ScalingPolicy, ScalingRules,
    SelectPolicy, parse_quantity,
};

/// KEDA ScaledObject spec: "pollingInterval: 30 # Optional. Default: 30 seconds".
pub const DEFAULT_POLLING_INTERVAL_SECONDS: u64 = 30;
/// KEDA ScaledObject spec: "cooldownPeriod: 300 # Optional. Default: 300 seconds".
pub const DEFAULT_COOLDOWN_PERIOD_SECONDS: u64 = 300;
/// KEDA ScaledObject spec: "minReplicaCount ... Default: 0".
pub const DEFAULT_MIN_REPLICA_COUNT: u32 = 0;
/// KEDA ScaledObject spec: "maxReplicaCount ... Default: 100".
pub const DEFAULT_MAX_REPLICA_COUNT: u32 = 100;
/// kube-controller-manager `--horizontal-pod-autoscaler-tolerance` default (HPA docs, "Algorithm details").
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// HPA docs, "Default Behavior": scale-down stabilization window of 300 seconds.
pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: u64 = 300;

/// One rate-limiting policy with its period as a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period: Duration,
}

/// Resolved HPAScalingRules for one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_window: Duration,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
    pub tolerance: f64,
}

impl Rules {
    /// HPA docs, "Default Behavior": scale up with no stabilization, by at most 4 Pods or 100 % per 15 s,
    /// whichever is more (selectPolicy Max).
    pub fn default_scale_up() -> Rules {
        Rules {
            stabilization_window: Duration::ZERO,
            select_policy: SelectPolicy::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: Duration::from_secs(15),
                },
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                },
            ],
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// HPA docs, "Default Behavior": scale down to the 300 s stabilized recommendation, removing up to
    /// 100 % of the pods per 15 s.
    pub fn default_scale_down() -> Rules {
        Rules {
            stabilization_window: Duration::from_secs(DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS),
            select_policy: SelectPolicy::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: Duration::from_secs(15),
            }],
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Kubernetes defaults each unset field of HPAScalingRules on its own (autoscaling/v2
    /// `GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`): a rule set that only names a window keeps
    /// the default policies.
    fn resolve(given: Option<&ScalingRules>, defaults: Rules) -> Result<Rules, SpecError> {
        let Some(given) = given else {
            return Ok(defaults);
        };
        let policies = match &given.policies {
            Some(list) => list.iter().map(resolve_policy).collect(),
            None => defaults.policies,
        };
        let tolerance = match &given.tolerance {
            Some(q) => parse_quantity(q).map_err(|message| SpecError::Invalid {
                field: "tolerance".into(),
                message,
            })?,
            None => defaults.tolerance,
        };
        Ok(Rules {
            stabilization_window: given
                .stabilization_window_seconds
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(defaults.stabilization_window),
            select_policy: given.select_policy.unwrap_or(defaults.select_policy),
            policies,
            tolerance,
        })
    }

    fn scaled(&self, factor: f64) -> Rules {
        Rules {
            stabilization_window: scale(self.stabilization_window, factor),
            select_policy: self.select_policy,
            policies: self
                .policies
                .iter()
                .map(|p| Policy {
                    period: scale(p.period, factor),
                    ..*p
                })
                .collect(),
            tolerance: self.tolerance,
        }
    }

    /// The longest policy period: scale events older than this no longer matter.
    pub fn longest_period(&self) -> Duration {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or_default()
    }
}

fn resolve_policy(policy: &ScalingPolicy) -> Policy {
    Policy {
        kind: policy.kind,
        value: policy.value as u32,
        period: Duration::from_secs(policy.period_seconds as u64),
    }
}

/// One trigger as the controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    /// KEDA's trigger type (`external`, `external-push`, `prometheus`, ...).
    pub kind: String,
    /// `triggers[].name`, or `s<index>-<type>` as KEDA names unnamed triggers' metrics.
    pub name: String,
    pub metric_type: MetricType,
    pub metadata: BTreeMap<String, String>,
}

/// Resolved `spec.fallback`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallbackConfig {
    pub failure_threshold: u32,
    pub replicas: u32,
    pub behavior: FallbackBehavior,
}

/// Everything the controller needs, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig {
    pub name: String,
    pub target_name: String,
    pub polling_interval: Duration,
    pub cooldown_period: Duration,
    pub initial_cooldown_period: Duration,
    pub idle_replica_count: Option<u32>,
    pub min_replica_count: u32,
    pub max_replica_count: u32,
    pub fallback: Option<FallbackConfig>,
    pub scale_up: Rules,
    pub scale_down: Rules,
    pub triggers: Vec<TriggerConfig>,
    /// The factor applied by [`ScalingConfig::time_scaled`] (1.0 when unscaled).
    pub time_scale: f64,
}

impl ScalingConfig {
    /// Resolve a validated ScaledObject.
    pub fn from_scaled_object(object: &ScaledObject) -> Result<ScalingConfig, SpecError> {
        object.validate()?;
        let spec = &object.spec;
        let behavior: Behavior = spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|h| h.behavior.clone())
            .unwrap_or_default();
        let mut triggers = Vec::new();
        for (i, trigger) in spec.triggers.iter().enumerate() {
            triggers.push(TriggerConfig {
                kind: trigger.kind.clone(),
                // KEDA's GenerateMetricNameWithIndex: "s{index}-{metricName}" when the trigger is unnamed.
                name: trigger
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("s{i}-{}", trigger.kind)),
                metric_type: trigger.metric_type.unwrap_or_default(),
                metadata: trigger.string_metadata(i)?,
            });
        }
        Ok(ScalingConfig {
            name: object.qualified_name(),
            target_name: spec.scale_target_ref.name.clone(),
            polling_interval: secs(spec.polling_interval, DEFAULT_POLLING_INTERVAL_SECONDS),
            cooldown_period: secs(spec.cooldown_period, DEFAULT_COOLDOWN_PERIOD_SECONDS),
            // KEDA ScaledObject spec: "initialCooldownPeriod ... Default: 0 seconds".
            initial_cooldown_period: secs(spec.initial_cooldown_period, 0),
            idle_replica_count: spec.idle_replica_count.map(|v| v as u32),
            min_replica_count: spec
                .min_replica_count
                .map(|v| v as u32)
                .unwrap_or(DEFAULT_MIN_REPLICA_COUNT),
            max_replica_count: spec
                .max_replica_count
                .map(|v| v as u32)
                .unwrap_or(DEFAULT_MAX_REPLICA_COUNT),
            fallback: spec.fallback.as_ref().map(|f| FallbackConfig {
                failure_threshold: f.failure_threshold as u32,
                replicas: f.replicas as u32,
                behavior: f.behavior.unwrap_or_default(),
            }),
            scale_up: Rules::resolve(behavior.scale_up.as_ref(), Rules::default_scale_up())
                .map_err(|e| {
                    prefix_field(
                        e,
                        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp",
                    )
                })?,
            scale_down: Rules::resolve(behavior.scale_down.as_ref(), Rules::default_scale_down())
                .map_err(|e| {
                prefix_field(
                    e,
                    "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown",
                )
            })?,
            triggers,
            time_scale: 1.0,
        })
    }

    /// Parse and resolve a ScaledObject YAML text.
    pub fn from_yaml(text: &str) -> Result<ScalingConfig, SpecError> {
        ScalingConfig::from_scaled_object(&ScaledObject::from_yaml(text)?)
    }

    /// The HPA's `minReplicas` as KEDA writes it: `minReplicaCount`, but at least 1 because KEDA itself
    /// handles 0 <-> 1 (KEDA "Scaling Deployments" concept: activation vs scaling phase).
    pub fn hpa_min_replicas(&self) -> u32 {
        self.min_replica_count.max(1)
    }

    /// Every duration multiplied by `factor` (0 < factor <= 1000): polling interval, cooldowns,
    /// stabilization windows and policy periods. Counts, targets and tolerances are unchanged, so the
    /// decisions are the same ones a cluster would take, only faster.
    pub fn time_scaled(&self, factor: f64) -> Result<ScalingConfig, SpecError> {
        if !(factor.is_finite() && factor > 0.0 && factor <= 1000.0) {
            return Err(SpecError::Invalid {
                field: "time-scale".into(),
                message: format!("{factor} must be a number in (0, 1000]"),
            });
        }
        Ok(ScalingConfig {
            polling_interval: scale(self.polling_interval, factor),
            cooldown_period: scale(self.cooldown_period, factor),
            initial_cooldown_period: scale(self.initial_cooldown_period, factor),
            scale_up: self.scale_up.scaled(factor),
            scale_down: self.scale_down.scaled(factor),
            time_scale: self.time_scale * factor,
            ..self.clone()
        })
    }
}

fn secs(value: Option<i64>, default: u64) -> Duration {
    Duration::from_secs(value.map(|v| v as u64).unwrap_or(default))
}

/// Multiply a duration, rounding to whole milliseconds so that printed values stay readable.
pub fn scale(duration: Duration, factor: f64) -> Duration {
    let millis = (duration.as_secs_f64() * factor * 1000.0).round();
    Duration::from_millis(millis.max(0.0) as u64)
}

fn prefix_field(error: SpecError, prefix: &str) -> SpecError {
    match error {
        SpecError::Invalid { field, message } => SpecError::Invalid {
            field: format!("{prefix}.{field}"),
            message,
        },
        other => other,
    }
}
