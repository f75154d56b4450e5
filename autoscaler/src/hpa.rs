//! The Horizontal Pod Autoscaler's arithmetic, as the Kubernetes documentation ("Horizontal Pod
//! Autoscaling": "Algorithm details", "Stabilization window", "Scaling policies") and the
//! kube-controller-manager describe it: the per-metric replica formula with tolerance, the recommendation
//! history for stabilization, and the scale-event history that rate-limits changes per policy period.
//! No clock: every function takes `now` as a [`Duration`] since the controller's epoch.

use std::time::Duration;

use crate::config::{Policy, Rules};
use crate::spec::{MetricType, PolicyKind, SelectPolicy};

/// Replicas proposed by one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReplicas {
    pub replicas: u32,
    /// The usage ratio the tolerance is applied to.
    pub ratio: f64,
    /// True when the ratio was within tolerance and the proposal is the current count.
    pub within_tolerance: bool,
    /// The formula with numbers, for people: `ceil(84 / 10) = 9`.
    pub formula: String,
}

/// Is `ratio` close enough to 1 that the HPA makes no change? The HPA docs: "If the ratio is sufficiently
/// close to 1.0 (within a globally-configurable tolerance, 0.1 by default), the control plane skips any
/// scaling action"; with configurable tolerance (behavior.scaleUp/scaleDown.tolerance) the scale-up
/// tolerance bounds ratios above 1 and the scale-down tolerance those below.
pub fn within_tolerance(ratio: f64, scale_up_tolerance: f64, scale_down_tolerance: f64) -> bool {
    ratio >= 1.0 - scale_down_tolerance && ratio <= 1.0 + scale_up_tolerance
}

fn ceil_to_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        // The HPA works in int32; a larger proposal is capped by maxReplicas anyway.
        x.ceil().min(i32::MAX as f64) as u32
    }
}

/// The usage ratio the HPA compares with 1 (its tolerance applies to it): `value / target` for a `Value` target,
/// `value / (target x current)` for a per-replica (`AverageValue`, `Utilization`) target. `None` when there is no ratio:
/// a per-replica target at zero replicas (any load then asks for replicas), or a target that is not above zero.
pub fn usage_ratio(metric_type: MetricType, value: f64, target: f64, current: u32) -> Option<f64> {
    if !(target > 0.0 && value.is_finite()) {
        return None;
    }
    match metric_type {
        MetricType::Value => Some(value / target),
        MetricType::AverageValue | MetricType::Utilization => {
            (current > 0).then(|| value / (target * f64::from(current)))
        }
    }
}

/// Desired replicas for one external metric.
///
/// - `AverageValue` (what KEDA uses by default): KEDA hands the HPA the *total* and a per-replica target,
///   so the usage ratio is `total / (target * current)` and the proposal `ceil(total / target)`
///   (kube-controller-manager `GetExternalPerPodMetricReplicas`).
/// - `Value`: the ratio is `value / target` and the proposal `ceil(ratio * readyReplicas)`; with zero
///   current replicas, `ceil(ratio)` (`GetExternalMetricReplicas`). This is the documented formula
///   `desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]`, counting
///   ready pods as the controller does.
pub fn metric_replicas(
    metric_type: MetricType,
    value: f64,
    target: f64,
    current: u32,
    ready: u32,
    rules_up: &Rules,
    rules_down: &Rules,
) -> MetricReplicas {
    let tolerance = |ratio: f64| within_tolerance(ratio, rules_up.tolerance, rules_down.tolerance);
    match metric_type {
        MetricType::AverageValue | MetricType::Utilization => {
            let ratio = usage_ratio(metric_type, value, target, current).unwrap_or(f64::INFINITY);
            if current > 0 && tolerance(ratio) {
                return MetricReplicas {
                    replicas: current,
                    ratio,
                    within_tolerance: true,
                    formula: format!(
                        "{} / ({} x {current}) = {:.2} is within tolerance of 1: keep {current}",
                        num(value),
                        num(target),
                        ratio
                    ),
                };
            }
            let replicas = ceil_to_u32(value / target);
            MetricReplicas {
                replicas,
                ratio,
                within_tolerance: false,
                formula: format!("ceil({} / {}) = {replicas}", num(value), num(target)),
            }
        }
        MetricType::Value => {
            let ratio = usage_ratio(metric_type, value, target, current).unwrap_or(f64::NAN);
            if current > 0 && tolerance(ratio) {
                return MetricReplicas {
                    replicas: current,
                    ratio,
                    within_tolerance: true,
                    formula: format!(
                        "{} / {} = {:.2} is within tolerance of 1: keep {current}",
                        num(value),
                        num(target),
                        ratio
                    ),
                };
            }
            let pods = if current == 0 { 1 } else { ready };
            let replicas = ceil_to_u32(ratio * pods as f64);
            MetricReplicas {
                replicas,
                ratio,
                within_tolerance: false,
                formula: format!(
                    "ceil({pods} x {} / {}) = {replicas}",
                    num(value),
                    num(target)
                ),
            }
        }
    }
}

/// What one metric alone asks the HPA for, with the default tolerance (0.1) and no behavior: the figure the scaler's
/// `/explain` shows per trigger and the generator's monitor uses when it only knows values and targets. `current` is
/// the replica count behind the value when known (also taken as ready). `None` for a value or target that gives no
/// answer (not finite, target not above zero).
pub fn replicas_for_value(
    metric_type: MetricType,
    value: f64,
    target: f64,
    current: Option<u32>,
) -> Option<u32> {
    if !(value.is_finite() && target.is_finite() && target > 0.0) {
        return None;
    }
    let (up, down) = (Rules::default_scale_up(), Rules::default_scale_down());
    let current = current.unwrap_or(0);
    Some(
        metric_replicas(
            metric_type,
            value.max(0.0),
            target,
            current,
            current,
            &up,
            &down,
        )
        .replicas,
    )
}

/// A number for people: integers and values of 1000 or more without decimals, others with up to 3.
pub fn num(x: f64) -> String {
    if x.abs() >= 1000.0 && x.abs() < 1e15 {
        // Large values (bytes per second, ...) read better without decimals.
        format!("{}", x.round() as i64)
    } else if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A timestamped replica count: a recommendation or a scale event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub at: Duration,
    pub replicas: u32,
}

/// Is a sample taken at `at` inside the window that ends at `now`? Kubernetes keeps samples whose
/// timestamp is strictly after `now - window`.
fn inside(at: Duration, window: Duration, now: Duration) -> bool {
    at + window > now
}

/// The outcome of the stabilization step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stabilized {
    pub replicas: u32,
    /// Lowest recommendation in the scale-up window (the most we may scale up to).
    pub up_bound: u32,
    /// Highest recommendation in the scale-down window (the least we may scale down to).
    pub down_bound: u32,
}

/// Stabilization (HPA docs, "Stabilization window"): "the control plane considers all recommendations
/// within the window": scaling up goes no further than the *lowest* recommendation of the scale-up window,
/// scaling down no further than the *highest* of the scale-down window. The new raw recommendation is
/// recorded after use.
pub fn stabilize(
    history: &mut Vec<Stamped>,
    now: Duration,
    current: u32,
    raw: u32,
    up: &Rules,
    down: &Rules,
) -> Stabilized {
    let mut up_bound = raw;
    let mut down_bound = raw;
    for sample in history.iter() {
        if inside(sample.at, up.stabilization_window, now) {
            up_bound = up_bound.min(sample.replicas);
        }
        if inside(sample.at, down.stabilization_window, now) {
            down_bound = down_bound.max(sample.replicas);
        }
    }
    let mut replicas = current;
    if replicas < up_bound {
        replicas = up_bound;
    }
    if replicas > down_bound {
        replicas = down_bound;
    }
    let keep = up.stabilization_window.max(down.stabilization_window);
    history.retain(|s| inside(s.at, keep, now));
    history.push(Stamped {
        at: now,
        replicas: raw,
    });
    Stabilized {
        replicas,
        up_bound,
        down_bound,
    }
}

/// Replicas added (or removed) by the events inside `period` before `now`.
pub fn change_in_period(events: &[Stamped], period: Duration, now: Duration) -> u32 {
    events
        .iter()
        .filter(|e| inside(e.at, period, now))
        .map(|e| e.replicas)
        .sum()
}

/// The replica count at the start of the policy's period: the current count minus what was added and plus
/// what was removed during the period (HPA docs, "Scaling policies"; kube-controller-manager
/// `calculateScaleUpLimitWithScalingRules`).
fn period_start(
    current: u32,
    policy: &Policy,
    ups: &[Stamped],
    downs: &[Stamped],
    now: Duration,
) -> i64 {
    current as i64 - change_in_period(ups, policy.period, now) as i64
        + change_in_period(downs, policy.period, now) as i64
}

/// The most replicas the scale-up policies allow now. `Max` picks the policy allowing the largest count,
/// `Min` the smallest, `Disabled` allows no scale-up.
pub fn scale_up_limit(
    current: u32,
    rules: &Rules,
    ups: &[Stamped],
    downs: &[Stamped],
    now: Duration,
) -> i64 {
    if rules.select_policy == SelectPolicy::Disabled || rules.policies.is_empty() {
        return current as i64;
    }
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, policy, ups, downs, now);
        match policy.kind {
            PolicyKind::Pods => start + policy.value as i64,
            PolicyKind::Percent => {
                (start as f64 * (1.0 + policy.value as f64 / 100.0)).ceil() as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Min => proposals.min().unwrap_or(current as i64),
        _ => proposals.max().unwrap_or(current as i64),
    }
}

/// The fewest replicas the scale-down policies allow now. `Max` picks the policy allowing the largest
/// change (the lowest count), `Min` the smallest change, `Disabled` allows no scale-down.
pub fn scale_down_limit(
    current: u32,
    rules: &Rules,
    ups: &[Stamped],
    downs: &[Stamped],
    now: Duration,
) -> i64 {
    if rules.select_policy == SelectPolicy::Disabled || rules.policies.is_empty() {
        return current as i64;
    }
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, policy, ups, downs, now);
        match policy.kind {
            PolicyKind::Pods => start - policy.value as i64,
            // Kubernetes converts with int32(), which truncates toward zero.
            PolicyKind::Percent => {
                (start as f64 * (1.0 - policy.value as f64 / 100.0)).trunc() as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Min => proposals.max().unwrap_or(current as i64),
        _ => proposals.min().unwrap_or(current as i64),
    }
}

/// Describe a rule set's policies: `Pods 4 per 15s, Percent 100% per 15s (selectPolicy Max)`.
pub fn describe_policies(rules: &Rules) -> String {
    let list: Vec<String> = rules
        .policies
        .iter()
        .map(|p| match p.kind {
            PolicyKind::Pods => format!("Pods {} per {}", p.value, secs(p.period)),
            PolicyKind::Percent => format!("Percent {}% per {}", p.value, secs(p.period)),
        })
        .collect();
    format!("{} (selectPolicy {})", list.join(", "), rules.select_policy)
}

/// A duration for people: `15s`, `1.5s`, `300s`.
pub fn secs(d: Duration) -> String {
    format!("{}s", num((d.as_secs_f64() * 1000.0).round() / 1000.0))
}

#[cfg(test)]
mod replicas_for_value_tests {
    use super::*;

    #[test]
    fn one_metric_alone_as_the_hpa_sees_it() {
        use MetricType::{AverageValue, Value};
        assert_eq!(replicas_for_value(AverageValue, 42.0, 5.0, None), Some(9));
        assert_eq!(
            replicas_for_value(AverageValue, 42.0, 5.0, Some(2)),
            Some(9)
        );
        // 20.5 / (5 x 4) = 1.025: within tolerance, keep 4.
        assert_eq!(
            replicas_for_value(AverageValue, 20.5, 5.0, Some(4)),
            Some(4)
        );
        assert_eq!(replicas_for_value(Value, 3.0, 2.0, Some(4)), Some(6));
        assert_eq!(replicas_for_value(Value, 3.0, 2.0, None), Some(2));
        assert_eq!(replicas_for_value(Value, 2.1, 2.0, Some(3)), Some(3));
        assert_eq!(replicas_for_value(AverageValue, 0.0, 5.0, Some(3)), Some(0));
        assert_eq!(replicas_for_value(AverageValue, f64::NAN, 5.0, None), None);
        assert_eq!(replicas_for_value(AverageValue, 1.0, 0.0, None), None);
    }
}
