//! KEDA's part of the controller, from the KEDA ScaledObject specification: activation from zero,
//! cooldownPeriod to zero, initialCooldownPeriod, idleReplicaCount, minReplicaCount and fallback on scaler
//! errors (static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower).

use crate::support::*;
use autoscaler::{MetricStatus, MetricType, Observation, Outcome, Reading};

fn inactive(name: &str) -> Observation {
    Observation {
        trigger: name.to_string(),
        metric_type: MetricType::AverageValue,
        target: 10.0,
        reading: Ok(Reading::with_activation(0.0, 0.0)),
    }
}

#[test]
fn activation_from_zero_goes_to_min_or_one() {
    // (case, spec, expected replicas on activation)
    let cases: &[(&str, &str, u32)] = &[
        ("minReplicaCount 0: to 1", "minReplicaCount: 0", 1),
        (
            "idleReplicaCount 0, min 3: to 3",
            "idleReplicaCount: 0\nminReplicaCount: 3",
            3,
        ),
    ];
    for (name, spec, expected) in cases {
        let mut c = controller(spec, ONE_AVERAGE);
        let d = step(&mut c, 0.0, 0, vec![inactive("m")]);
        assert_eq!(
            (d.desired, d.outcome.clone()),
            (0, Outcome::Idle),
            "{name}: {d}"
        );
        // Value 50 with target 10 would ask for 5, but activation only goes to the minimum: the HPA
        // takes over from there.
        let d = step_avg(&mut c, 5.0, 0, 50.0, 10.0);
        assert_eq!(d.desired, *expected, "{name}: {d}");
        assert!(
            matches!(d.outcome, Outcome::Activated { ref trigger, from: 0 } if trigger == "m"),
            "{name}: {d}"
        );
        assert!(d.to_string().contains("activates from zero"), "{name}: {d}");
    }
}

#[test]
fn activation_target_decides_activity() {
    let mut c = controller("minReplicaCount: 0", ONE_AVERAGE);
    let below = Observation {
        trigger: "m".into(),
        metric_type: MetricType::AverageValue,
        target: 10.0,
        reading: Ok(Reading::with_activation(1.0, 1.0)),
    };
    assert_eq!(
        step(&mut c, 0.0, 0, vec![below]).desired,
        0,
        "value == activationTarget is not active"
    );
    let above = Observation {
        trigger: "m".into(),
        metric_type: MetricType::AverageValue,
        target: 10.0,
        reading: Ok(Reading::with_activation(1.5, 1.0)),
    };
    assert_eq!(step(&mut c, 1.0, 0, vec![above]).desired, 1);
}

#[test]
fn cooldown_to_zero_after_last_activity() {
    let mut c = controller("minReplicaCount: 0\ncooldownPeriod: 300", ONE_AVERAGE);
    // Active at t=0 with 1 replica (5 / 10 per replica within the HPA's range).
    assert_eq!(step_avg(&mut c, 0.0, 1, 5.0, 10.0).desired, 1);
    assert_eq!(c.last_active(), Some(at(0.0)));
    // Inactive afterwards: the HPA keeps 1 (its minimum) until cooldownPeriod has passed.
    for t in [30.0, 150.0, 299.0] {
        let d = step(&mut c, t, 1, vec![inactive("m")]);
        assert_eq!(d.desired, 1, "t={t}: {d}");
        assert_eq!(d.cooldown_remaining, Some(at(300.0 - t)), "t={t}");
        assert!(d.to_string().contains("scale to zero in"), "{d}");
    }
    let d = step(&mut c, 300.0, 1, vec![inactive("m")]);
    assert_eq!(d.desired, 0, "{d}");
    assert!(matches!(d.outcome, Outcome::CooledDown { .. }), "{d}");
    assert!(d.to_string().contains("cooldownPeriod elapsed"), "{d}");
}

#[test]
fn activity_restarts_the_cooldown() {
    let mut c = controller("minReplicaCount: 0\ncooldownPeriod: 60", ONE_AVERAGE);
    step_avg(&mut c, 0.0, 1, 5.0, 10.0);
    step(&mut c, 40.0, 1, vec![inactive("m")]);
    step_avg(&mut c, 50.0, 1, 5.0, 10.0);
    assert_eq!(step(&mut c, 100.0, 1, vec![inactive("m")]).desired, 1);
    assert_eq!(step(&mut c, 110.0, 1, vec![inactive("m")]).desired, 0);
}

#[test]
fn initial_cooldown_period_delays_the_first_scale_to_zero() {
    // Never active: KEDA scales to zero at once, unless initialCooldownPeriod says to wait.
    let mut c = controller("minReplicaCount: 0\ncooldownPeriod: 10", ONE_AVERAGE);
    assert_eq!(
        step(&mut c, 0.0, 1, vec![inactive("m")]).desired,
        1,
        "cooldown counts from creation"
    );
    assert_eq!(step(&mut c, 10.0, 1, vec![inactive("m")]).desired, 0);
    let mut c = controller(
        "minReplicaCount: 0\ncooldownPeriod: 10\ninitialCooldownPeriod: 120",
        ONE_AVERAGE,
    );
    assert_eq!(step(&mut c, 60.0, 1, vec![inactive("m")]).desired, 1);
    assert_eq!(step(&mut c, 120.0, 1, vec![inactive("m")]).desired, 0);
}

#[test]
fn idle_replica_count_and_min_replica_count() {
    // idleReplicaCount 0 with min 2: inactive for cooldown -> 0; HPA never goes below 2 while active.
    let mut c = controller(
        "idleReplicaCount: 0\nminReplicaCount: 2\ncooldownPeriod: 30",
        ONE_AVERAGE,
    );
    assert_eq!(step_avg(&mut c, 0.0, 2, 1.0, 10.0).desired, 2);
    assert_eq!(step(&mut c, 30.0, 2, vec![inactive("m")]).desired, 0);
    // A target below minReplicaCount without idle is raised to it by KEDA.
    let mut c = controller("minReplicaCount: 3", ONE_AVERAGE);
    let d = step(&mut c, 0.0, 1, vec![inactive("m")]);
    assert_eq!(
        (d.desired, d.outcome.clone()),
        (3, Outcome::RaisedToMin),
        "{d}"
    );
    // With min >= 1 an inactive target never goes to zero.
    let mut c = controller("minReplicaCount: 1\ncooldownPeriod: 1", ONE_AVERAGE);
    assert_eq!(step(&mut c, 100.0, 1, vec![inactive("m")]).desired, 1);
}

#[test]
fn fallback_after_failure_threshold() {
    // (case, behavior line, current, expected after the threshold is passed)
    let cases: &[(&str, &str, u32, u32)] = &[
        ("static -> fallback.replicas", "", 2, 6),
        ("static explicit", "behavior: static", 8, 6),
        ("currentReplicas keeps 4", "behavior: currentReplicas", 4, 4),
        (
            "currentReplicasIfHigher: 8 > 6 keeps 8",
            "behavior: currentReplicasIfHigher",
            8,
            8,
        ),
        (
            "currentReplicasIfHigher: 3 < 6 goes to 6",
            "behavior: currentReplicasIfHigher",
            3,
            6,
        ),
        (
            "currentReplicasIfLower: 3 < 6 keeps 3",
            "behavior: currentReplicasIfLower",
            3,
            3,
        ),
        (
            "currentReplicasIfLower: 8 > 6 goes to 6",
            "behavior: currentReplicasIfLower",
            8,
            6,
        ),
    ];
    for (name, behavior, current, expected) in cases {
        let behavior = if behavior.is_empty() {
            String::new()
        } else {
            format!("  {behavior}\n")
        };
        let spec = format!(
            "minReplicaCount: 1\nfallback:\n  failureThreshold: 3\n  replicas: 6\n{behavior}advanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0"
        );
        let mut c = controller(&spec, ONE_AVERAGE);
        // KEDA: fallback once numberOfFailures > failureThreshold; up to the threshold, no change.
        for (i, t) in [0.0, 5.0, 10.0].iter().enumerate() {
            let d = step(
                &mut c,
                *t,
                *current,
                vec![failed("m", MetricType::AverageValue, 10.0)],
            );
            assert_eq!(d.desired, *current, "{name}: failure {}: {d}", i + 1);
            assert_eq!(d.outcome, Outcome::NoMetrics, "{name}");
            assert_eq!(
                d.metrics[0].status,
                MetricStatus::Error {
                    message: "connection refused".into(),
                    failures: i as u32 + 1
                },
                "{name}"
            );
        }
        let d = step(
            &mut c,
            15.0,
            *current,
            vec![failed("m", MetricType::AverageValue, 10.0)],
        );
        assert_eq!(d.desired, *expected, "{name}: {d}");
        assert!(
            matches!(
                d.metrics[0].status,
                MetricStatus::Fallback { failures: 4, .. }
            ),
            "{name}: {d}"
        );
        if *expected != *current {
            assert!(
                d.to_string().contains("fallback after 4 failures"),
                "{name}: {d}"
            );
        }
        // One good reading resets the failure count.
        step_avg(&mut c, 20.0, *expected, 10.0, 10.0);
        let d = step(
            &mut c,
            25.0,
            *expected,
            vec![failed("m", MetricType::AverageValue, 10.0)],
        );
        assert!(
            matches!(d.metrics[0].status, MetricStatus::Error { failures: 1, .. }),
            "{name}: {d}"
        );
    }
}

#[test]
fn fallback_is_not_used_for_value_metrics() {
    // KEDA: "It only supports scalers whose target is an AverageValue metric".
    let mut c = controller(
        "minReplicaCount: 1\nfallback:\n  failureThreshold: 0\n  replicas: 5",
        ONE_VALUE,
    );
    let d = step(&mut c, 0.0, 2, vec![failed("m", MetricType::Value, 10.0)]);
    assert_eq!(d.desired, 2, "{d}");
    assert!(matches!(d.metrics[0].status, MetricStatus::Error { .. }));
}

#[test]
fn fallback_from_zero_and_errors_block_scale_to_zero() {
    let mut c = controller(
        "minReplicaCount: 0\ncooldownPeriod: 10\nfallback:\n  failureThreshold: 1\n  replicas: 3",
        ONE_AVERAGE,
    );
    // First failure at 1 replica: not inactive, so no scale to zero even after the cooldown.
    let d = step(
        &mut c,
        50.0,
        1,
        vec![failed("m", MetricType::AverageValue, 10.0)],
    );
    assert_eq!(
        (d.desired, d.outcome.clone()),
        (1, Outcome::HeldByScalerError),
        "{d}"
    );
    // Second failure (> threshold 1): fallback 3 through the HPA.
    assert_eq!(
        step(
            &mut c,
            55.0,
            1,
            vec![failed("m", MetricType::AverageValue, 10.0)]
        )
        .desired,
        3
    );
    // At zero with the scaler still failing: KEDA scales straight to the fallback count.
    let d = step(
        &mut c,
        60.0,
        0,
        vec![failed("m", MetricType::AverageValue, 10.0)],
    );
    assert_eq!(
        (d.desired, d.outcome.clone()),
        (3, Outcome::FallbackFromZero { replicas: 3 }),
        "{d}"
    );
}

#[test]
fn a_failing_metric_blocks_scale_down_but_not_scale_up() {
    // HPA docs: if a metric cannot be computed and the others suggest scaling down, scaling is skipped.
    let spec = "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0";
    let mut c = controller(spec, TWO);
    let d = step(
        &mut c,
        0.0,
        4,
        vec![
            obs("a", MetricType::AverageValue, 10.0, 10.0),
            failed("b", MetricType::Value, 1.0),
        ],
    );
    assert_eq!(
        (d.desired, d.outcome.clone()),
        (4, Outcome::ScaleDownBlockedByInvalidMetrics),
        "{d}"
    );
    let d = step(
        &mut c,
        1.0,
        4,
        vec![
            obs("a", MetricType::AverageValue, 80.0, 10.0),
            failed("b", MetricType::Value, 1.0),
        ],
    );
    assert_eq!(d.desired, 8, "{d}");
    // Equal to the current count is not a scale-down: the HPA goes on (and records the recommendation).
    let d = step(
        &mut c,
        1.5,
        4,
        vec![
            obs("a", MetricType::AverageValue, 40.0, 10.0),
            failed("b", MetricType::Value, 1.0),
        ],
    );
    assert_eq!((d.desired, d.outcome.clone()), (4, Outcome::Hpa), "{d}");
    // A trigger that sends nothing at all counts as failed.
    let d = step(
        &mut c,
        2.0,
        4,
        vec![obs("a", MetricType::AverageValue, 10.0, 10.0)],
    );
    assert_eq!(d.outcome, Outcome::ScaleDownBlockedByInvalidMetrics, "{d}");
}

#[test]
fn bad_observations_are_errors_not_panics() {
    let mut c = controller("minReplicaCount: 1", ONE_AVERAGE);
    for (value, target) in [
        (f64::NAN, 10.0),
        (f64::INFINITY, 10.0),
        (5.0, 0.0),
        (5.0, -1.0),
    ] {
        let d = step(
            &mut c,
            0.0,
            2,
            vec![obs("m", MetricType::AverageValue, value, target)],
        );
        assert_eq!(d.desired, 2, "{value}/{target}: {d}");
        assert!(
            matches!(d.metrics[0].status, MetricStatus::Error { .. }),
            "{value}/{target}"
        );
    }
    // Time going backwards is clamped, never a panic.
    step_avg(&mut c, 100.0, 2, 20.0, 10.0);
    let d = step_avg(&mut c, 50.0, 2, 20.0, 10.0);
    assert_eq!(d.at, at(100.0));
}

#[test]
fn fallback_needs_a_known_target() {
    // KEDA's fallback value is `target x fallback.replicas`; with no positive target there is nothing to
    // report, so the trigger stays a plain error.
    let mut c = controller(
        "minReplicaCount: 1\nfallback:\n  failureThreshold: 0\n  replicas: 5",
        ONE_AVERAGE,
    );
    let d = step(
        &mut c,
        0.0,
        2,
        vec![failed("m", MetricType::AverageValue, 0.0)],
    );
    assert_eq!(d.desired, 2, "{d}");
    assert!(
        matches!(d.metrics[0].status, MetricStatus::Error { .. }),
        "{d}"
    );
}
