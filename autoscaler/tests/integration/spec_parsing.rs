//! ScaledObject parsing: KEDA's and the HPA's defaults, the project's own manifest, clear errors for
//! invalid input, and the time-scale helper.

use std::time::Duration;

use crate::support::*;
use autoscaler::{
    FallbackBehavior, MetricType, PolicyKind, Rules, ScaledObject, ScalingConfig, SelectPolicy,
    SpecError,
};

#[test]
fn defaults_match_keda_and_kubernetes_documentation() {
    let cfg = config("", ONE_AVERAGE);
    assert_eq!(cfg.polling_interval, Duration::from_secs(30));
    assert_eq!(cfg.cooldown_period, Duration::from_secs(300));
    assert_eq!(cfg.initial_cooldown_period, Duration::ZERO);
    assert_eq!(cfg.idle_replica_count, None);
    assert_eq!(cfg.min_replica_count, 0);
    assert_eq!(cfg.max_replica_count, 100);
    assert_eq!(cfg.fallback, None);
    assert_eq!(cfg.scale_up.stabilization_window, Duration::ZERO);
    assert_eq!(cfg.scale_up.select_policy, SelectPolicy::Max);
    assert_eq!(
        cfg.scale_up
            .policies
            .iter()
            .map(|p| (p.kind, p.value, p.period.as_secs()))
            .collect::<Vec<_>>(),
        vec![(PolicyKind::Pods, 4, 15), (PolicyKind::Percent, 100, 15)]
    );
    assert_eq!(
        cfg.scale_down.stabilization_window,
        Duration::from_secs(300)
    );
    assert_eq!(
        cfg.scale_down
            .policies
            .iter()
            .map(|p| (p.kind, p.value, p.period.as_secs()))
            .collect::<Vec<_>>(),
        vec![(PolicyKind::Percent, 100, 15)]
    );
    assert_eq!(cfg.scale_up.tolerance, 0.1);
    assert_eq!(cfg.scale_down.tolerance, 0.1);
    assert_eq!(cfg.triggers[0].metric_type, MetricType::AverageValue);
    assert_eq!(cfg.name, "lab/test");
}

#[test]
fn each_unset_behavior_field_keeps_its_default() {
    let cfg = config(
        "advanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 60\n      scaleUp:\n        selectPolicy: Min",
        ONE_AVERAGE,
    );
    assert_eq!(cfg.scale_down.stabilization_window, Duration::from_secs(60));
    assert_eq!(
        cfg.scale_down.policies,
        Rules::default_scale_down().policies
    );
    assert_eq!(cfg.scale_up.select_policy, SelectPolicy::Min);
    assert_eq!(cfg.scale_up.policies, Rules::default_scale_up().policies);
}

#[test]
fn the_projects_scaledobject_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/components/keda/scaledobject.yaml"
    );
    let text = std::fs::read_to_string(path).expect("manifests/components/keda/scaledobject.yaml");
    let cfg = ScalingConfig::from_yaml(&text).expect("the project's ScaledObject is valid");
    assert!(!cfg.triggers.is_empty());
    assert!(cfg.max_replica_count >= cfg.min_replica_count);
    for trigger in &cfg.triggers {
        assert!(trigger.kind.starts_with("external"), "{trigger:?}");
        assert!(
            trigger.metadata.contains_key("scalerAddress"),
            "{trigger:?}"
        );
    }
}

#[test]
fn unnamed_triggers_get_keda_style_names_and_fallback_parses() {
    let cfg = config(
        "fallback:\n  failureThreshold: 2\n  replicas: 4\n  behavior: currentReplicasIfHigher",
        "    - type: external\n      metadata:\n        scalerAddress: x:1\n        target: \"5\"\n",
    );
    assert_eq!(cfg.triggers[0].name, "s0-external");
    assert_eq!(cfg.triggers[0].metadata["target"], "5");
    let fallback = cfg.fallback.unwrap();
    assert_eq!(
        (
            fallback.failure_threshold,
            fallback.replicas,
            fallback.behavior
        ),
        (2, 4, FallbackBehavior::CurrentReplicasIfHigher)
    );
}

#[test]
fn multi_document_yaml_picks_the_scaledobject() {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n---\n{}",
        yaml("", ONE_AVERAGE)
    );
    assert!(ScaledObject::from_yaml(&text).is_ok());
    let err = ScaledObject::from_yaml("apiVersion: v1\nkind: Service\n").unwrap_err();
    assert_eq!(
        err,
        SpecError::NoScaledObject {
            seen_kinds: vec!["Service".into()]
        }
    );
}

#[test]
fn invalid_scaledobjects_name_the_field() {
    let behavior = |rules: &str| {
        let indented: String = rules.lines().map(|l| format!("      {l}\n")).collect();
        format!("advanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n{indented}")
    };
    // (case, spec, triggers, expected text in the error)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "typo",
            "pollingIntervall: 5".into(),
            ONE_AVERAGE,
            "unknown field `pollingIntervall`",
        ),
        (
            "min > max",
            "minReplicaCount: 5\nmaxReplicaCount: 2".into(),
            ONE_AVERAGE,
            "spec.minReplicaCount",
        ),
        (
            "max 0",
            "maxReplicaCount: 0".into(),
            ONE_AVERAGE,
            "spec.maxReplicaCount",
        ),
        (
            "polling 0",
            "pollingInterval: 0".into(),
            ONE_AVERAGE,
            "spec.pollingInterval",
        ),
        (
            "negative cooldown",
            "cooldownPeriod: -1".into(),
            ONE_AVERAGE,
            "spec.cooldownPeriod",
        ),
        (
            "idle >= min",
            "idleReplicaCount: 2\nminReplicaCount: 2".into(),
            ONE_AVERAGE,
            "spec.idleReplicaCount",
        ),
        (
            "fallback without replicas",
            "fallback:\n  failureThreshold: 3".into(),
            ONE_AVERAGE,
            "missing field `replicas`",
        ),
        (
            "bad fallback behavior",
            "fallback:\n  failureThreshold: 3\n  replicas: 2\n  behavior: sometimes".into(),
            ONE_AVERAGE,
            "sometimes",
        ),
        (
            "window > 3600",
            behavior("scaleDown:\n  stabilizationWindowSeconds: 4000"),
            ONE_AVERAGE,
            "stabilizationWindowSeconds",
        ),
        (
            "period 0",
            behavior(
                "scaleUp:\n  policies:\n    - type: Pods\n      value: 1\n      periodSeconds: 0",
            ),
            ONE_AVERAGE,
            "periodSeconds",
        ),
        (
            "period > 1800",
            behavior(
                "scaleUp:\n  policies:\n    - type: Pods\n      value: 1\n      periodSeconds: 1801",
            ),
            ONE_AVERAGE,
            "periodSeconds",
        ),
        (
            "value 0",
            behavior(
                "scaleUp:\n  policies:\n    - type: Percent\n      value: 0\n      periodSeconds: 15",
            ),
            ONE_AVERAGE,
            "value",
        ),
        (
            "policy type",
            behavior(
                "scaleUp:\n  policies:\n    - type: Replicas\n      value: 1\n      periodSeconds: 15",
            ),
            ONE_AVERAGE,
            "Replicas",
        ),
        (
            "select policy",
            behavior("scaleUp:\n  selectPolicy: Biggest"),
            ONE_AVERAGE,
            "Biggest",
        ),
        (
            "empty policies",
            behavior("scaleUp:\n  policies: []"),
            ONE_AVERAGE,
            "at least one policy",
        ),
        (
            "negative tolerance",
            behavior("scaleUp:\n  tolerance: -0.1"),
            ONE_AVERAGE,
            "tolerance",
        ),
        (
            "garbage tolerance",
            behavior("scaleUp:\n  tolerance: lots"),
            ONE_AVERAGE,
            "tolerance",
        ),
        ("no triggers", String::new(), "    []\n", "spec.triggers"),
        (
            "numeric metadata",
            String::new(),
            "    - type: external\n      metadata:\n        target: 5\n",
            "spec.triggers[0].metadata.target: must be a string",
        ),
        (
            "Utilization on external",
            String::new(),
            "    - type: external\n      metricType: Utilization\n      metadata: {}\n",
            "Utilization is only valid",
        ),
        (
            "duplicate names",
            String::new(),
            "    - type: external\n      name: a\n      metadata: {}\n    - type: external\n      name: a\n      metadata: {}\n",
            "names must be unique",
        ),
    ];
    for (name, spec, triggers, expected) in cases {
        let err = ScalingConfig::from_yaml(&yaml(&spec, triggers))
            .expect_err(name)
            .to_string();
        assert!(err.contains(expected), "{name}: {err:?} lacks {expected:?}");
    }
    let wrong_version = yaml("", ONE_AVERAGE).replace("keda.sh/v1alpha1", "keda.k8s.io/v1alpha1");
    let err = ScalingConfig::from_yaml(&wrong_version)
        .unwrap_err()
        .to_string();
    assert!(err.contains("apiVersion"), "{err}");
    assert!(
        ScalingConfig::from_yaml("{{{")
            .unwrap_err()
            .to_string()
            .contains("YAML")
    );
}

#[test]
fn time_scale_shrinks_every_duration_and_nothing_else() {
    let cfg = config(
        "pollingInterval: 5\ncooldownPeriod: 60\ninitialCooldownPeriod: 20\nminReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 60\n        policies:\n          - type: Percent\n            value: 50\n            periodSeconds: 30",
        ONE_AVERAGE,
    );
    let scaled = cfg.time_scaled(0.1).unwrap();
    assert_eq!(scaled.polling_interval, Duration::from_millis(500));
    assert_eq!(scaled.cooldown_period, Duration::from_secs(6));
    assert_eq!(scaled.initial_cooldown_period, Duration::from_secs(2));
    assert_eq!(
        scaled.scale_down.stabilization_window,
        Duration::from_secs(6)
    );
    assert_eq!(scaled.scale_down.policies[0].period, Duration::from_secs(3));
    assert_eq!(
        scaled.scale_up.policies[0].period,
        Duration::from_millis(1500)
    );
    assert_eq!(scaled.scale_down.policies[0].value, 50);
    assert_eq!(scaled.min_replica_count, cfg.min_replica_count);
    assert_eq!(scaled.time_scale, 0.1);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 5000.0] {
        assert!(cfg.time_scaled(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_time_scaled_controller_takes_the_same_decisions_sooner() {
    // The same sequence of readings at times x 0.1 gives the same replica counts.
    let cfg = config("minReplicaCount: 1\ncooldownPeriod: 60", ONE_AVERAGE);
    let totals = [
        5.0, 80.0, 80.0, 80.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0,
    ];
    let run = |cfg: ScalingConfig, tick: f64| {
        let mut c = autoscaler::Controller::new(cfg);
        let mut replicas = 1;
        let mut seen = Vec::new();
        for (i, total) in totals.iter().cycle().take(60).enumerate() {
            let d = step_avg(&mut c, i as f64 * tick, replicas, *total, 10.0);
            replicas = d.desired;
            seen.push(replicas);
        }
        seen
    };
    assert_eq!(
        run(cfg.clone(), 15.0),
        run(cfg.time_scaled(0.1).unwrap(), 1.5)
    );
}
