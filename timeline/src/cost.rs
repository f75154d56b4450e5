//! What the replicas cost: provisioned replica-seconds, per 1000 requests, and the replica-seconds above what the
//! load needed. Needed replicas in an interval are `max(minReplicas, ceil(offered rate / per-replica capacity))`
//! (minReplicas 1 when unknown): what a perfect autoscaler with the same floor would have run.

use crate::episodes::{Ctx, EPS};
use crate::input::Sample;
use crate::output::{Cost, ScaleDownStep};

/// Replicas the offered load needed in a sample, given the per-replica capacity.
pub fn needed_replicas(s: &Sample, capacity: f64, min_replicas: u32) -> u32 {
    let by_load = if capacity > 0.0 {
        (s.offered_rate / capacity - EPS).ceil().max(0.0) as u32
    } else {
        0
    };
    by_load.max(min_replicas)
}

/// The part of sample `s` inside `[from, to)`, in seconds.
fn overlap(s: &Sample, from: f64, to: f64) -> f64 {
    (s.end_s.min(to) - s.start_s.max(from)).max(0.0)
}

pub(crate) fn cost(ctx: &Ctx, downs: &[ScaleDownStep]) -> Cost {
    let tl = ctx.tl;
    let replica_seconds: f64 = tl
        .samples
        .iter()
        .map(|s| f64::from(s.provisioned().unwrap_or(0)) * s.duration_s())
        .sum();
    let requests: u64 = tl.samples.iter().map(|s| s.requests).sum();
    let mut cost = Cost {
        replica_seconds,
        requests,
        replica_seconds_per_1000_requests: (requests > 0)
            .then(|| replica_seconds * 1000.0 / requests as f64),
        ..Cost::default()
    };
    let Some(capacity) = &ctx.capacity else {
        return cost;
    };
    let min = tl.settings.min_replicas.unwrap_or(1);
    let excess = |s: &Sample| -> u32 {
        s.provisioned().unwrap_or(0).saturating_sub(needed_replicas(
            s,
            capacity.per_replica_rate,
            min,
        ))
    };
    let waste_in = |from: f64, to: f64| -> f64 {
        tl.samples
            .iter()
            .map(|s| f64::from(excess(s)) * overlap(s, from, to))
            .sum()
    };
    let end = tl.observed_until();
    cost.wasted_replica_seconds = Some(waste_in(f64::NEG_INFINITY, f64::INFINITY));
    if let Some(load_end) = tl.load_end_s {
        cost.wasted_after_load_end = Some(waste_in(load_end, f64::INFINITY));
        let until = downs
            .iter()
            .find(|d| d.after_load_end_s.is_some())
            .map_or(end, |d| d.t_s);
        cost.wasted_before_first_step_down = Some(waste_in(load_end, until));
        cost.idle_replicas_before_first_step_down = tl
            .samples
            .iter()
            .filter(|s| overlap(s, load_end, until) > 0.0)
            .map(excess)
            .max();
    }
    cost
}
