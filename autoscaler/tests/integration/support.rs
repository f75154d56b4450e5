//! Helpers shared by the autoscaler's table-driven tests: build a ScaledObject from a spec fragment and
//! step a controller with readings at explicit times.

#![allow(dead_code)]

use std::time::Duration;

use autoscaler::{
    Controller, Decision, MetricType, Observation, Reading, ScalingConfig, StepInput,
};

/// A ScaledObject YAML around `extra` spec lines (indented two spaces) and `triggers` (already indented).
pub fn yaml(extra: &str, triggers: &str) -> String {
    let extra: String = extra
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {l}\n"))
        .collect();
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: test\n  namespace: lab\nspec:\n  scaleTargetRef:\n    name: consumer\n{extra}  triggers:\n{triggers}"
    )
}

/// One external AverageValue trigger named `m`.
pub const ONE_AVERAGE: &str = "    - type: external\n      name: m\n      metricType: AverageValue\n      metadata:\n        scalerAddress: x:1\n";
/// One external Value trigger named `m`.
pub const ONE_VALUE: &str = "    - type: external\n      name: m\n      metricType: Value\n      metadata:\n        scalerAddress: x:1\n";
/// Two triggers: `a` (AverageValue) and `b` (Value).
pub const TWO: &str = "    - type: external\n      name: a\n      metadata:\n        scalerAddress: x:1\n    - type: external\n      name: b\n      metricType: Value\n      metadata:\n        scalerAddress: x:1\n";

pub fn config(extra: &str, triggers: &str) -> ScalingConfig {
    ScalingConfig::from_yaml(&yaml(extra, triggers)).expect("valid ScaledObject")
}

pub fn controller(extra: &str, triggers: &str) -> Controller {
    Controller::new(config(extra, triggers))
}

/// An active reading of `value` for trigger `name` with the given type and target.
pub fn obs(name: &str, metric_type: MetricType, value: f64, target: f64) -> Observation {
    Observation {
        trigger: name.to_string(),
        metric_type,
        target,
        reading: Ok(Reading::with_activation(value, 0.0)),
    }
}

pub fn failed(name: &str, metric_type: MetricType, target: f64) -> Observation {
    Observation {
        trigger: name.to_string(),
        metric_type,
        target,
        reading: Err("connection refused".to_string()),
    }
}

pub fn at(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

/// Step with all replicas ready.
pub fn step(
    c: &mut Controller,
    now: f64,
    current: u32,
    observations: Vec<Observation>,
) -> Decision {
    c.step(&StepInput {
        now: at(now),
        current_replicas: current,
        ready_replicas: current,
        observations,
    })
}

/// Step with one AverageValue metric `m`.
pub fn step_avg(c: &mut Controller, now: f64, current: u32, total: f64, target: f64) -> Decision {
    step(
        c,
        now,
        current,
        vec![obs("m", MetricType::AverageValue, total, target)],
    )
}
