//! The HPA part of the controller, table-driven from the Kubernetes "Horizontal Pod Autoscaling"
//! documentation: the formula for AverageValue and Value targets, tolerance, the maximum over metrics,
//! stabilization windows, default and custom policies, selectPolicy Min/Max/Disabled, min/max bounds.

use crate::support::*;
use autoscaler::{Direction, Limit, MetricStatus, MetricType, Outcome};

/// (case, metric type, value, target, current replicas, ready replicas, expected proposal)
#[test]
fn formula_average_value_and_value() {
    let cases: &[(&str, MetricType, f64, f64, u32, u32, u32)] = &[
        // HPA docs: "if the current metric value is 200m, and the desired value is 100m, the number of
        // replicas will be doubled".
        (
            "docs: 200m vs 100m doubles",
            MetricType::Value,
            0.2,
            0.1,
            2,
            2,
            4,
        ),
        // HPA docs: "if the current value is instead 50m, you'll halve the number of replicas".
        (
            "docs: 50m vs 100m halves",
            MetricType::Value,
            0.05,
            0.1,
            4,
            4,
            2,
        ),
        // Value uses ready pods: 3 current, 2 ready, ratio 2 -> ceil(2 x 2) = 4.
        (
            "Value counts ready pods",
            MetricType::Value,
            200.0,
            100.0,
            3,
            2,
            4,
        ),
        // AverageValue: KEDA gives the total; ceil(total / per-replica target).
        (
            "AverageValue total 84 / 10",
            MetricType::AverageValue,
            84.0,
            10.0,
            3,
            3,
            9,
        ),
        (
            "AverageValue ready pods do not matter",
            MetricType::AverageValue,
            84.0,
            10.0,
            3,
            1,
            9,
        ),
        (
            "AverageValue scales down",
            MetricType::AverageValue,
            12.0,
            10.0,
            6,
            6,
            2,
        ),
        (
            "AverageValue zero total",
            MetricType::AverageValue,
            0.0,
            10.0,
            4,
            4,
            0,
        ),
        (
            "AverageValue fractional",
            MetricType::AverageValue,
            2.5,
            0.5,
            1,
            1,
            5,
        ),
    ];
    for (name, metric_type, value, target, current, ready, expected) in cases {
        let rules_up = autoscaler::Rules::default_scale_up();
        let rules_down = autoscaler::Rules::default_scale_down();
        let got = autoscaler::hpa::metric_replicas(
            *metric_type,
            *value,
            *target,
            *current,
            *ready,
            &rules_up,
            &rules_down,
        );
        assert_eq!(got.replicas, *expected, "{name}: {}", got.formula);
    }
}

/// (case, tolerance lines, value, target, current, expected proposal, within tolerance)
#[test]
fn tolerance_default_and_configured() {
    let cases: &[(&str, &str, f64, f64, u32, u32, bool)] = &[
        (
            "default 0.1: ratio 1.067 keeps 3",
            "",
            32.0,
            10.0,
            3,
            3,
            true,
        ),
        (
            "default 0.1: ratio 1.1 is still within",
            "",
            33.0,
            10.0,
            3,
            3,
            true,
        ),
        (
            "default 0.1: ratio 1.133 scales",
            "",
            34.0,
            10.0,
            3,
            4,
            false,
        ),
        (
            "default 0.1: ratio 0.9 is within",
            "",
            27.0,
            10.0,
            3,
            3,
            true,
        ),
        (
            "default 0.1: ratio 0.867 scales down",
            "",
            26.0,
            10.0,
            3,
            3,
            false,
        ),
        (
            "default 0.1: ratio 0.5 scales down",
            "",
            15.0,
            10.0,
            3,
            2,
            false,
        ),
        // HPA docs, tolerance field: "scale-down and scale-up tolerances of 5% and 1% ... scaling will be
        // triggered when the actual consumption falls below 95Mi or exceeds 101Mi".
        (
            "custom up 1%: 102 of 100 scales",
            "scaleUp:\n  tolerance: 0.01\nscaleDown:\n  tolerance: \"50m\"",
            102.0,
            100.0,
            1,
            2,
            false,
        ),
        (
            "custom down 5%: 96 of 100 holds",
            "scaleUp:\n  tolerance: 0.01\nscaleDown:\n  tolerance: \"50m\"",
            96.0,
            100.0,
            1,
            1,
            true,
        ),
        (
            "custom down 5%: 94 of 100 on 4 replicas",
            "scaleUp:\n  tolerance: 0.01\nscaleDown:\n  tolerance: \"50m\"",
            376.0,
            100.0,
            4,
            4,
            false,
        ),
    ];
    for (name, behavior, value, target, current, expected, within) in cases {
        let extra = if behavior.is_empty() {
            String::new()
        } else {
            let indented: String = behavior.lines().map(|l| format!("      {l}\n")).collect();
            format!("advanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n{indented}")
        };
        let cfg = config(&extra, ONE_AVERAGE);
        let got = autoscaler::hpa::metric_replicas(
            MetricType::AverageValue,
            *value,
            *target,
            *current,
            *current,
            &cfg.scale_up,
            &cfg.scale_down,
        );
        assert_eq!(
            (got.replicas, got.within_tolerance),
            (*expected, *within),
            "{name}: {}",
            got.formula
        );
    }
}

#[test]
fn tolerance_keeps_current_replicas_in_the_controller() {
    let mut c = controller("minReplicaCount: 1", ONE_AVERAGE);
    let d = step_avg(&mut c, 0.0, 3, 32.0, 10.0);
    assert_eq!(d.desired, 3);
    assert_eq!(d.metrics[0].status, MetricStatus::WithinTolerance);
    assert!(d.to_string().contains("within tolerance"), "{d}");
}

#[test]
fn several_metrics_take_the_maximum() {
    // (case, a total with target 10 per replica, b value with target 100, current, expected, winner)
    let cases: &[(&str, f64, f64, u32, u32, &str)] = &[
        ("a wins", 84.0, 100.0, 2, 9, "a"),
        ("b wins", 10.0, 300.0, 2, 6, "b"),
        ("both low: the higher low one", 10.0, 50.0, 4, 2, "b"),
    ];
    for (name, a, b, current, expected, winner) in cases {
        // No scale-down stabilization so the raw maximum shows directly; generous policies.
        let mut c = controller(
            "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0\n      scaleUp:\n        policies:\n          - type: Pods\n            value: 100\n            periodSeconds: 15",
            TWO,
        );
        let d = step(
            &mut c,
            0.0,
            *current,
            vec![
                obs("a", MetricType::AverageValue, *a, 10.0),
                obs("b", MetricType::Value, *b, 100.0),
            ],
        );
        assert_eq!(d.desired, *expected, "{name}: {d}");
        assert_eq!(d.winner.as_deref(), Some(*winner), "{name}: {d}");
        assert_eq!(d.outcome, Outcome::Hpa, "{name}");
    }
}

const NO_WINDOWS: &str = "minReplicaCount: 1\nmaxReplicaCount: 100\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0\n";

#[test]
fn default_scale_up_policy_is_4_pods_or_100_percent_per_15s() {
    // HPA docs, "Default Behavior": scaleUp policies Percent 100 / 15 s and Pods 4 / 15 s, selectPolicy Max.
    // (case, current, raw proposal as a total with target 1, expected)
    let cases: &[(&str, u32, f64, u32)] = &[
        ("1 -> 10: Pods 4 allows 5", 1, 10.0, 5),
        ("2 -> 10: Pods 4 allows 6", 2, 10.0, 6),
        ("10 -> 50: Percent 100 allows 20", 10, 50.0, 20),
        ("4 -> 8: both allow 8", 4, 8.0, 8),
    ];
    for (name, current, total, expected) in cases {
        let mut c = controller("minReplicaCount: 1", ONE_AVERAGE);
        let d = step_avg(&mut c, 0.0, *current, *total, 1.0);
        assert_eq!(d.desired, *expected, "{name}: {d}");
    }
}

#[test]
fn scale_up_policy_counts_earlier_changes_in_the_period() {
    let mut c = controller("minReplicaCount: 1", ONE_AVERAGE);
    // t=0: 1 -> 5 (Pods 4).
    assert_eq!(step_avg(&mut c, 0.0, 1, 20.0, 1.0).desired, 5);
    // t=5: the period started at 1 replica, so Pods 4 still allows 5, Percent 100 allows 2: hold 5.
    let d = step_avg(&mut c, 5.0, 5, 20.0, 1.0);
    assert_eq!(d.desired, 5, "{d}");
    assert!(
        matches!(
            d.limits.last(),
            Some(Limit::Policy {
                direction: Direction::Up,
                limit: 5,
                ..
            })
        ),
        "{d}"
    );
    assert!(d.to_string().contains("scale-up policy"), "{d}");
    // t=15: the t=0 event left the 15 s period: from 5, Pods 4 allows 9, Percent 100 allows 10.
    assert_eq!(step_avg(&mut c, 15.0, 5, 20.0, 1.0).desired, 10);
}

#[test]
fn custom_policies_and_select_policy() {
    let behavior = |rules: &str| {
        let indented: String = rules.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n{indented}"
        )
    };
    // (case, behavior, current, raw (total, target 1), expected)
    let cases: Vec<(&str, String, u32, f64, u32)> = vec![
        (
            "scaleUp Pods 1 per 60s",
            behavior(
                "scaleUp:\n  policies:\n    - type: Pods\n      value: 1\n      periodSeconds: 60",
            ),
            2,
            5.0,
            3,
        ),
        (
            "scaleUp Percent 50 rounds up",
            behavior(
                "scaleUp:\n  policies:\n    - type: Percent\n      value: 50\n      periodSeconds: 60",
            ),
            3,
            10.0,
            5,
        ),
        (
            "selectPolicy Min picks the smaller change",
            behavior(
                "scaleUp:\n  selectPolicy: Min\n  policies:\n    - type: Pods\n      value: 4\n      periodSeconds: 15\n    - type: Percent\n      value: 100\n      periodSeconds: 15",
            ),
            10,
            50.0,
            14,
        ),
        (
            "selectPolicy Max picks the larger change",
            behavior(
                "scaleUp:\n  selectPolicy: Max\n  policies:\n    - type: Pods\n      value: 4\n      periodSeconds: 15\n    - type: Percent\n      value: 100\n      periodSeconds: 15",
            ),
            10,
            50.0,
            20,
        ),
        (
            "scaleUp Disabled",
            behavior("scaleUp:\n  selectPolicy: Disabled"),
            2,
            10.0,
            2,
        ),
        (
            "scaleDown Disabled (HPA docs example)",
            behavior("scaleDown:\n  selectPolicy: Disabled"),
            6,
            1.0,
            6,
        ),
        (
            "scaleDown Pods 2 per 60s, no window",
            behavior(
                "scaleDown:\n  stabilizationWindowSeconds: 0\n  policies:\n    - type: Pods\n      value: 2\n      periodSeconds: 60",
            ),
            10,
            1.0,
            8,
        ),
        (
            "scaleDown selectPolicy Min",
            behavior(
                "scaleDown:\n  stabilizationWindowSeconds: 0\n  selectPolicy: Min\n  policies:\n    - type: Pods\n      value: 4\n      periodSeconds: 60\n    - type: Percent\n      value: 10\n      periodSeconds: 60",
            ),
            80,
            10.0,
            76,
        ),
        (
            "default scaleDown: 100% per 15s once the window allows",
            NO_WINDOWS.to_string(),
            10,
            1.0,
            1,
        ),
    ];
    for (name, extra, current, total, expected) in cases {
        let mut c = controller(&extra, ONE_AVERAGE);
        let d = step_avg(&mut c, 0.0, current, total, 1.0);
        assert_eq!(d.desired, expected, "{name}: {d}");
        if name.contains("Disabled") {
            assert!(
                d.limits.iter().any(|l| matches!(l, Limit::Disabled { .. })),
                "{name}: {d}"
            );
        }
    }
}

#[test]
fn docs_example_percent_10_scale_down_from_80() {
    // HPA docs, "Scaling policies": with Pods 4 / 60 s and Percent 10 / 60 s, 80 replicas going to 10
    // lose 8 in the first step; at 72, 10 % is 7.2 and 8 are removed (to 64).
    let mut c = controller(
        "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0\n        policies:\n          - type: Pods\n            value: 4\n            periodSeconds: 60\n          - type: Percent\n            value: 10\n            periodSeconds: 60",
        ONE_AVERAGE,
    );
    assert_eq!(step_avg(&mut c, 0.0, 80, 10.0, 1.0).desired, 72);
    // Within the same 60 s period nothing more may go.
    assert_eq!(step_avg(&mut c, 30.0, 72, 10.0, 1.0).desired, 72);
    assert_eq!(step_avg(&mut c, 60.0, 72, 10.0, 1.0).desired, 64);
}

#[test]
fn scale_down_stabilization_uses_the_highest_recommendation_in_the_window() {
    // Default scale-down window 300 s: a recommendation of 10 at t=0 holds until it leaves the window.
    let mut c = controller("minReplicaCount: 1", ONE_AVERAGE);
    assert_eq!(step_avg(&mut c, 0.0, 10, 100.0, 10.0).desired, 10);
    for t in [15.0, 100.0, 299.0] {
        let d = step_avg(&mut c, t, 10, 20.0, 10.0);
        assert_eq!(d.desired, 10, "t={t}: {d}");
        assert_eq!(d.raw, Some(2));
        assert!(
            matches!(
                d.limits.first(),
                Some(Limit::Stabilization {
                    direction: Direction::Down,
                    to: 10,
                    ..
                })
            ),
            "t={t}: {d}"
        );
    }
    // At t=300 the t=0 sample (10) is out of the window; the highest left is 2.
    let d = step_avg(&mut c, 300.0, 10, 20.0, 10.0);
    assert_eq!(d.desired, 2, "{d}");
}

#[test]
fn scale_down_stabilization_follows_a_falling_maximum() {
    // Window 60 s: recommendations 8 (t=0), 5 (t=30), 2 (t=45..): desired follows the max inside the window.
    let mut c = controller(
        "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 60",
        ONE_AVERAGE,
    );
    let steps: &[(f64, u32, f64, u32)] = &[
        (0.0, 8, 80.0, 8),
        (30.0, 8, 50.0, 8),
        (45.0, 8, 20.0, 8),
        (60.0, 8, 20.0, 5),
        (90.0, 5, 20.0, 2),
    ];
    for (t, current, total, expected) in steps {
        let d = step_avg(&mut c, *t, *current, *total, 10.0);
        assert_eq!(d.desired, *expected, "t={t}: {d}");
    }
}

#[test]
fn scale_up_stabilization_uses_the_lowest_recommendation_in_the_window() {
    let mut c = controller(
        "minReplicaCount: 1\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleUp:\n        stabilizationWindowSeconds: 30",
        ONE_AVERAGE,
    );
    // t=0 recommends 2 (current 2); a spike to 6 at t=10 is held at 2 (lowest in the window).
    assert_eq!(step_avg(&mut c, 0.0, 2, 20.0, 10.0).desired, 2);
    let d = step_avg(&mut c, 10.0, 2, 60.0, 10.0);
    assert_eq!(d.desired, 2, "{d}");
    assert!(
        d.to_string().contains("scale-up stabilization window 30s"),
        "{d}"
    );
    // Sustained until t=30 when the t=0 sample has left the window: 6.
    assert_eq!(step_avg(&mut c, 20.0, 2, 60.0, 10.0).desired, 2);
    assert_eq!(step_avg(&mut c, 30.0, 2, 60.0, 10.0).desired, 6);
}

#[test]
fn min_and_max_bounds() {
    // (case, spec, current, total (target 1), expected, limit)
    type BoundCase = (&'static str, &'static str, u32, f64, u32, Option<Limit>);
    let cases: &[BoundCase] = &[
        (
            "maxReplicaCount caps",
            "minReplicaCount: 1\nmaxReplicaCount: 4",
            2,
            50.0,
            4,
            Some(Limit::MaxReplicas { max: 4 }),
        ),
        (
            "minReplicaCount floors",
            "minReplicaCount: 3\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0",
            6,
            0.0,
            3,
            Some(Limit::MinReplicas { min: 3 }),
        ),
        (
            "minReplicaCount 0 still gives the HPA a minimum of 1",
            "minReplicaCount: 0\nadvanced:\n  horizontalPodAutoscalerConfig:\n    behavior:\n      scaleDown:\n        stabilizationWindowSeconds: 0",
            4,
            0.5,
            1,
            None,
        ),
    ];
    for (name, spec, current, total, expected, limit) in cases {
        let mut c = controller(spec, ONE_AVERAGE);
        let d = step_avg(&mut c, 0.0, *current, *total, 1.0);
        assert_eq!(d.desired, *expected, "{name}: {d}");
        if let Some(limit) = limit {
            assert!(d.limits.contains(limit), "{name}: {d}");
        }
    }
    // Replicas already outside the bounds are corrected without metrics (HPA controller).
    let mut c = controller("minReplicaCount: 2\nmaxReplicaCount: 5", ONE_AVERAGE);
    let d = step_avg(&mut c, 0.0, 9, 0.0, 1.0);
    assert_eq!(
        (d.desired, d.outcome.clone()),
        (5, Outcome::AboveMax),
        "{d}"
    );
}

#[test]
fn value_metric_uses_ready_replicas() {
    let mut c = controller(NO_WINDOWS, ONE_VALUE);
    let d = c.step(&autoscaler::StepInput {
        now: at(0.0),
        current_replicas: 4,
        ready_replicas: 2,
        observations: vec![obs("m", MetricType::Value, 300.0, 100.0)],
    });
    assert_eq!(d.desired, 6, "{d}");
    assert!(d.to_string().contains("ceil(2 x 300 / 100) = 6"), "{d}");
}
