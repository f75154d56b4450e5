//! The KEDA `ScaledObject` (`keda.sh/v1alpha1`) as written in YAML: serde types that mirror the CRD
//! (`shared/fixtures/crds/keda.sh_scaledobjects.yaml`, KEDA v2.20) plus the validation KEDA's CRD schema,
//! its admission webhook and the Kubernetes HPA API apply. Defaults are resolved in [`crate::config`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::SpecError;

/// A whole `ScaledObject` document.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ScaledObjectSpec,
    /// Ignored: a `kubectl get -o yaml` dump carries it, the lab does not need it.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_norway::Value>,
}

/// The part of Kubernetes' ObjectMeta the lab uses; every other field is accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_norway::Value>,
}

/// `spec` of a ScaledObject. Unknown fields are errors, so a typo such as `pollingIntervall` is reported
/// instead of silently falling back to a default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaledObjectSpec {
    pub scale_target_ref: ScaleTargetRef,
    pub polling_interval: Option<i64>,
    pub cooldown_period: Option<i64>,
    pub initial_cooldown_period: Option<i64>,
    pub idle_replica_count: Option<i64>,
    pub min_replica_count: Option<i64>,
    pub max_replica_count: Option<i64>,
    pub fallback: Option<Fallback>,
    pub advanced: Option<Advanced>,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTargetRef {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub env_source_container_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    pub failure_threshold: i64,
    pub replicas: i64,
    pub behavior: Option<FallbackBehavior>,
}

/// `spec.fallback.behavior` (KEDA ScaledObject spec, "fallback.behavior"; enum in the v2.20 CRD).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    /// Use `fallback.replicas`.
    #[default]
    Static,
    /// Keep the current replica count.
    CurrentReplicas,
    /// The current count if it is higher than `fallback.replicas`, else `fallback.replicas`.
    CurrentReplicasIfHigher,
    /// The current count if it is lower than `fallback.replicas`, else `fallback.replicas`.
    CurrentReplicasIfLower,
    /// Only meaningful with `advanced.scalingModifiers`, which the lab does not evaluate.
    ScalingModifiers,
}

impl fmt::Display for FallbackBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Static => "static",
            Self::CurrentReplicas => "currentReplicas",
            Self::CurrentReplicasIfHigher => "currentReplicasIfHigher",
            Self::CurrentReplicasIfLower => "currentReplicasIfLower",
            Self::ScalingModifiers => "scalingModifiers",
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Advanced {
    pub restore_to_original_replica_count: Option<bool>,
    pub horizontal_pod_autoscaler_config: Option<HorizontalPodAutoscalerConfig>,
    /// Accepted so real manifests parse; the lab refuses to run a ScaledObject that sets a formula.
    pub scaling_modifiers: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscalerConfig {
    pub name: Option<String>,
    pub behavior: Option<Behavior>,
}

/// `autoscaling/v2` HorizontalPodAutoscalerBehavior.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    pub scale_up: Option<ScalingRules>,
    pub scale_down: Option<ScalingRules>,
}

/// `autoscaling/v2` HPAScalingRules.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    pub stabilization_window_seconds: Option<i64>,
    pub select_policy: Option<SelectPolicy>,
    pub policies: Option<Vec<ScalingPolicy>>,
    /// A Kubernetes quantity (`0.05`, `"50m"`), int-or-string in the CRD.
    pub tolerance: Option<serde_norway::Value>,
}

/// `autoscaling/v2` ScalingPolicySelect.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the largest change (the default).
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

impl fmt::Display for SelectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Max => "Max",
            Self::Min => "Min",
            Self::Disabled => "Disabled",
        })
    }
}

/// `autoscaling/v2` HPAScalingPolicy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    pub value: i64,
    pub period_seconds: i64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pods => "Pods",
            Self::Percent => "Percent",
        })
    }
}

/// One entry of `spec.triggers`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    /// The CRD declares string values; numbers are rejected with a hint to quote them, as the API server would.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_norway::Value>,
    pub metric_type: Option<MetricType>,
    pub use_cached_metrics: Option<bool>,
    pub authentication_ref: Option<serde_norway::Value>,
}

/// `autoscaling/v2` MetricTargetType.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum MetricType {
    /// The target is per replica: the HPA divides the metric by the replica count (KEDA's default).
    #[default]
    AverageValue,
    /// The target is for the metric as a whole.
    Value,
    /// Percent of a resource request: only for `cpu` / `memory` triggers.
    Utilization,
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AverageValue => "AverageValue",
            Self::Value => "Value",
            Self::Utilization => "Utilization",
        })
    }
}

impl std::str::FromStr for MetricType {
    type Err = String;

    /// The `autoscaling/v2` spelling, as [`Display`](fmt::Display) writes it.
    fn from_str(text: &str) -> Result<MetricType, String> {
        match text {
            "AverageValue" => Ok(Self::AverageValue),
            "Value" => Ok(Self::Value),
            "Utilization" => Ok(Self::Utilization),
            other => Err(format!(
                "unknown metricType {other:?} (AverageValue, Value or Utilization)"
            )),
        }
    }
}

impl Trigger {
    /// The trigger's metadata as strings, or an error naming the first non-string value.
    pub fn string_metadata(&self, index: usize) -> Result<BTreeMap<String, String>, SpecError> {
        let mut out = BTreeMap::new();
        for (key, value) in &self.metadata {
            let text = match value {
                serde_norway::Value::String(s) => s.clone(),
                other => {
                    return Err(SpecError::Invalid {
                        field: format!("spec.triggers[{index}].metadata.{key}"),
                        message: format!(
                            "must be a string (the CRD declares string values); quote it, e.g. \"{}\"",
                            yaml_scalar_text(other)
                        ),
                    });
                }
            };
            out.insert(key.clone(), text);
        }
        Ok(out)
    }
}

fn yaml_scalar_text(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::Number(n) => n.to_string(),
        serde_norway::Value::Bool(b) => b.to_string(),
        serde_norway::Value::Null => String::new(),
        _ => "...".to_string(),
    }
}

/// Parse a Kubernetes quantity as used for `tolerance` (`0.1`, `"0.05"`, `"50m"`, `"1e-2"`).
pub fn parse_quantity(value: &serde_norway::Value) -> Result<f64, String> {
    let text = match value {
        serde_norway::Value::Number(n) => {
            return n.as_f64().ok_or_else(|| format!("{n} is not a number"));
        }
        serde_norway::Value::String(s) => s.trim().to_string(),
        other => {
            return Err(format!(
                "expected a number or quantity string, got {other:?}"
            ));
        }
    };
    let (digits, scale) = match text.chars().last() {
        Some('m') => (&text[..text.len() - 1], 1e-3),
        Some('u') => (&text[..text.len() - 1], 1e-6),
        Some('n') => (&text[..text.len() - 1], 1e-9),
        Some('k') => (&text[..text.len() - 1], 1e3),
        _ => (text.as_str(), 1.0),
    };
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity (examples: 0.1, \"50m\")"))?;
    if !number.is_finite() {
        return Err(format!("{text:?} is not finite"));
    }
    Ok(number * scale)
}

impl ScaledObject {
    /// Parse the first `ScaledObject` in a (possibly multi-document) YAML text and validate it.
    pub fn from_yaml(text: &str) -> Result<ScaledObject, SpecError> {
        let mut seen_kinds = Vec::new();
        for document in serde_norway::Deserializer::from_str(text) {
            let value = serde_norway::Value::deserialize(document)
                .map_err(|e| SpecError::Yaml(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("<none>")
                .to_string();
            if kind != "ScaledObject" {
                seen_kinds.push(kind);
                continue;
            }
            let object: ScaledObject =
                serde_norway::from_value(value).map_err(|e| SpecError::Yaml(e.to_string()))?;
            object.validate()?;
            return Ok(object);
        }
        Err(SpecError::NoScaledObject { seen_kinds })
    }

    /// `namespace/name`, as KEDA names a ScaledObject in logs and metrics.
    pub fn qualified_name(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or("unnamed")
        )
    }

    /// The checks of the CRD schema, KEDA's admission webhook and the HPA API validation.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field: &str, message: String| SpecError::Invalid {
            field: field.to_string(),
            message,
        };
        if self.api_version != "keda.sh/v1alpha1" {
            return Err(invalid(
                "apiVersion",
                format!("is {:?}; expected \"keda.sh/v1alpha1\"", self.api_version),
            ));
        }
        let spec = &self.spec;
        if spec.scale_target_ref.name.is_empty() {
            return Err(invalid(
                "spec.scaleTargetRef.name",
                "must not be empty".into(),
            ));
        }
        check_range(
            "spec.pollingInterval",
            spec.polling_interval,
            1,
            i32::MAX as i64,
        )?;
        check_range(
            "spec.cooldownPeriod",
            spec.cooldown_period,
            0,
            i32::MAX as i64,
        )?;
        check_range(
            "spec.initialCooldownPeriod",
            spec.initial_cooldown_period,
            0,
            i32::MAX as i64,
        )?;
        check_range(
            "spec.idleReplicaCount",
            spec.idle_replica_count,
            0,
            i32::MAX as i64,
        )?;
        check_range(
            "spec.minReplicaCount",
            spec.min_replica_count,
            0,
            i32::MAX as i64,
        )?;
        check_range(
            "spec.maxReplicaCount",
            spec.max_replica_count,
            1,
            i32::MAX as i64,
        )?;
        let min = spec.min_replica_count.unwrap_or(0);
        let max = spec.max_replica_count.unwrap_or(100);
        if min > max {
            return Err(invalid(
                "spec.minReplicaCount",
                format!("{min} is greater than maxReplicaCount {max}"),
            ));
        }
        if let Some(idle) = spec.idle_replica_count
            && idle >= min
        {
            return Err(invalid(
                "spec.idleReplicaCount",
                format!("{idle} must be less than minReplicaCount {min}"),
            ));
        }
        if let Some(fallback) = &spec.fallback {
            check_range(
                "spec.fallback.failureThreshold",
                Some(fallback.failure_threshold),
                0,
                i32::MAX as i64,
            )?;
            check_range(
                "spec.fallback.replicas",
                Some(fallback.replicas),
                0,
                i32::MAX as i64,
            )?;
        }
        if let Some(behavior) = spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|h| h.behavior.as_ref())
        {
            let prefix = "spec.advanced.horizontalPodAutoscalerConfig.behavior";
            if let Some(rules) = &behavior.scale_up {
                validate_rules(&format!("{prefix}.scaleUp"), rules)?;
            }
            if let Some(rules) = &behavior.scale_down {
                validate_rules(&format!("{prefix}.scaleDown"), rules)?;
            }
        }
        if spec.triggers.is_empty() {
            return Err(invalid(
                "spec.triggers",
                "must hold at least one trigger".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, trigger) in spec.triggers.iter().enumerate() {
            if trigger.kind.is_empty() {
                return Err(invalid(
                    &format!("spec.triggers[{i}].type"),
                    "must not be empty".into(),
                ));
            }
            trigger.string_metadata(i)?;
            if trigger.metric_type == Some(MetricType::Utilization)
                && !matches!(trigger.kind.as_str(), "cpu" | "memory")
            {
                return Err(invalid(
                    &format!("spec.triggers[{i}].metricType"),
                    format!(
                        "Utilization is only valid for cpu and memory triggers, not {:?}",
                        trigger.kind
                    ),
                ));
            }
            if let Some(name) = &trigger.name
                && !names.insert(name.clone())
            {
                return Err(invalid(
                    &format!("spec.triggers[{i}].name"),
                    format!("{name:?} is used by two triggers; names must be unique"),
                ));
            }
        }
        Ok(())
    }
}

fn check_range(field: &str, value: Option<i64>, min: i64, max: i64) -> Result<(), SpecError> {
    match value {
        Some(v) if v < min || v > max => Err(SpecError::Invalid {
            field: field.to_string(),
            message: format!("{v} is out of range [{min}, {max}]"),
        }),
        _ => Ok(()),
    }
}

/// The HPA API's validation of HPAScalingRules (kubernetes `validateScalingRules`).
fn validate_rules(prefix: &str, rules: &ScalingRules) -> Result<(), SpecError> {
    // "StabilizationWindowSeconds must be greater than or equal to zero and less than or equal to 3600".
    check_range(
        &format!("{prefix}.stabilizationWindowSeconds"),
        rules.stabilization_window_seconds,
        0,
        3600,
    )?;
    if let Some(policies) = &rules.policies {
        if policies.is_empty() && rules.select_policy != Some(SelectPolicy::Disabled) {
            return Err(SpecError::Invalid {
                field: format!("{prefix}.policies"),
                message: "must specify at least one policy (or omit the field for the defaults)"
                    .into(),
            });
        }
        for (i, policy) in policies.iter().enumerate() {
            // "PeriodSeconds must be greater than zero and less than or equal to 1800 (30 min)".
            check_range(
                &format!("{prefix}.policies[{i}].periodSeconds"),
                Some(policy.period_seconds),
                1,
                1800,
            )?;
            // "value ... must be greater than zero".
            check_range(
                &format!("{prefix}.policies[{i}].value"),
                Some(policy.value),
                1,
                i32::MAX as i64,
            )?;
        }
    }
    if let Some(tolerance) = &rules.tolerance {
        let parsed = parse_quantity(tolerance).map_err(|message| SpecError::Invalid {
            field: format!("{prefix}.tolerance"),
            message,
        })?;
        if parsed < 0.0 {
            return Err(SpecError::Invalid {
                field: format!("{prefix}.tolerance"),
                message: format!("{parsed} must be greater than or equal to zero"),
            });
        }
    }
    Ok(())
}
