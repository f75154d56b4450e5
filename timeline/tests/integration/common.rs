//! Synthetic timelines for the scenario tests: one-second samples whose every figure the tests set on purpose, so
//! each expected phase time can be worked out by hand.

#![allow(dead_code)]

use std::collections::BTreeMap;

use timeline::{
    DecisionPoint, MetricType, Percentiles, ReplicaLife, Sample, Settings, SignalSample, Timeline,
};

/// `n` one-second samples at 50 req/s offered and served, 100 requests each, p95 100 ms, one replica `r0`.
pub fn base(n: usize) -> Timeline {
    let samples = (0..n)
        .map(|i| Sample {
            start_s: i as f64,
            end_s: i as f64 + 1.0,
            offered_rate: 50.0,
            achieved_rate: 50.0,
            latency: Percentiles {
                p50_s: Some(0.05),
                p90_s: Some(0.08),
                p95_s: Some(0.1),
                p99_s: Some(0.2),
                p99_9_s: Some(0.3),
            },
            requests: 100,
            errors_by_class: BTreeMap::new(),
            over_slo: None,
            desired: Some(1),
            current: Some(1),
            ready: Some(1),
            served_by: vec!["r0".into()],
            backlog: Some(0.0),
        })
        .collect();
    Timeline {
        samples,
        signals: Vec::new(),
        decisions: Vec::new(),
        replicas: vec![life("r0", Some(0.0), Some(0.0), Some(0.0))],
        load_end_s: None,
        settings: Settings {
            trigger_windows: BTreeMap::from([
                ("request-rate".to_string(), 2.0),
                ("backlog".to_string(), 1.0),
            ]),
            polling_interval_s: Some(1.0),
            scale_up_stabilization_s: Some(0.0),
            scale_up_policy_periods_s: vec![6.0],
            scale_down_stabilization_s: Some(30.0),
            cooldown_s: Some(300.0),
            tolerance: Some(0.0),
            min_replicas: Some(1),
        },
    }
}

pub fn life(
    name: &str,
    started: Option<f64>,
    ready: Option<f64>,
    served: Option<f64>,
) -> ReplicaLife {
    ReplicaLife {
        name: name.into(),
        started_s: started,
        ready_s: ready,
        first_served_s: served,
        stopped_s: None,
    }
}

/// Apply `f` to samples `from..to` (indices = start seconds).
pub fn each(tl: &mut Timeline, from: usize, to: usize, f: impl Fn(&mut Sample)) {
    let to = to.min(tl.samples.len());
    for s in &mut tl.samples[from..to] {
        f(s);
    }
}

/// p95 800 ms (over a 500 ms SLO) in samples `from..to`, 20 requests over the limit in each.
pub fn slow(tl: &mut Timeline, from: usize, to: usize) {
    each(tl, from, to, |s| {
        s.latency.p95_s = Some(0.8);
        s.over_slo = Some(20);
    });
}

/// Desired/current/ready/answering replicas from sample `from` on.
pub fn replicas(tl: &mut Timeline, from: usize, desired: u32, ready: u32) {
    let names: Vec<String> = (0..ready).map(|i| format!("r{i}")).collect();
    each(tl, from, usize::MAX, |s| {
        s.desired = Some(desired);
        s.current = Some(desired);
        s.ready = Some(ready);
        s.served_by = names.clone();
    });
}

/// Request-rate readings (AverageValue, target 50 per replica, 0.5 s old) at `times`, `value(t)` each.
pub fn rate_signal(
    tl: &mut Timeline,
    times: impl Iterator<Item = f64>,
    value: impl Fn(f64) -> f64,
) {
    for t in times {
        tl.signals.push(SignalSample {
            t_s: t,
            trigger: "request-rate".into(),
            value: value(t),
            target: 50.0,
            metric_type: MetricType::AverageValue,
            age_s: Some(0.5),
        });
    }
}

pub fn decide(tl: &mut Timeline, t: f64, from: u32, to: u32) {
    tl.decisions.push(DecisionPoint {
        t_s: t,
        from,
        to,
        trigger: Some("request-rate".into()),
        reason: format!("request-rate proposes {to}"),
    });
}

/// Offered rate `rate` from sample `from` on.
pub fn offer(tl: &mut Timeline, from: usize, rate: f64) {
    each(tl, from, usize::MAX, |s| s.offered_rate = rate);
}

/// The clean scale-up: 150 req/s from 10 s needs 3 replicas; p95 breaks 10..19; the request-rate trigger crosses at
/// 12; the controller goes 1 -> 3 at 14; r2 is ready at 16.5 and r1 at 17; they answer at 17.5 and 18; the SLO
/// holds from 19.
pub fn clean() -> Timeline {
    let mut tl = base(40);
    offer(&mut tl, 10, 150.0);
    slow(&mut tl, 10, 19);
    tl.samples[12].errors_by_class.insert("timeout".into(), 2);
    rate_signal(&mut tl, (0..40).map(f64::from), |t| {
        if t >= 12.0 { 150.0 } else { 50.0 }
    });
    decide(&mut tl, 14.0, 1, 3);
    tl.replicas
        .push(life("r1", Some(14.0), Some(17.0), Some(18.0)));
    tl.replicas
        .push(life("r2", Some(14.0), Some(16.5), Some(17.5)));
    replicas(&mut tl, 14, 3, 1);
    replicas(&mut tl, 17, 3, 3);
    tl
}
