//! What each fault cost, counted from the generator's request log (every request's target, end and outcome) and
//! judged by the run's SLO in short buckets after the fault:
//!
//! - a bucket meets the SLO when nothing was dropped, the error share of the requests that ended in it is under the
//!   SLO's, and the share of slow requests is within each latency objective's allowance (p95: 5 %); requests still
//!   open at the bucket's end count as slow once older than the limit (a frozen replica's requests hurt while they
//!   hang, not only when they finally end); a bucket in which nothing ended while requests were open is a stall;
//! - recovered = the first bucket from which the SLO held for the hold window (the scaling report's recovery hold);
//! - lost = the requests that failed, timed out or were dropped from the fault until that window ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use generator::engine::RequestRecord;
use generator::model::Outcome;
use generator::profile::ChaosAction;
use generator::report::{AutoscalerReaction, ChaosReport, FaultReport};
use timeline::Slo;

use super::FaultRecord;
use crate::replicas::Life;
use crate::view::DecisionRecord;

/// The run, as the measurements need it.
#[derive(Debug)]
pub struct Measured<'a> {
    /// The control loop's clock: the decisions' `t_s` zero.
    pub epoch: Instant,
    pub load_start: Instant,
    pub load_end: Instant,
    pub decisions: &'a [DecisionRecord],
    pub lives: &'a [Life],
    pub slo: &'a Slo,
    pub time_scale: f64,
}

/// How long the SLO must hold to call a fault recovered: the scaling report's 5 s recovery hold, time-scaled.
pub fn hold(time_scale: f64) -> Duration {
    Duration::from_secs_f64((5.0 * time_scale).max(0.5))
}

/// Buckets per hold window.
const BUCKETS_PER_HOLD: u32 = 5;

type Entry = Result<FaultRecord, super::schedule::Missed>;

pub fn measure(records: &[Entry], log: &[RequestRecord], run: &Measured<'_>) -> ChaosReport {
    let hold = hold(run.time_scale);
    let bucket = hold / BUCKETS_PER_HOLD;
    let faults = records
        .iter()
        .map(|entry| match entry {
            Ok(record) => measure_one(record, log, run, hold, bucket),
            Err((spec, at, why)) => FaultReport {
                at_s: since(run.load_start, *at),
                action: spec.action.to_string(),
                target: spec.target().to_string(),
                hit: None,
                error: Some(why.clone()),
                duration_s: spec.duration.map(|d| d.as_secs_f64()),
                window_end_s: since(run.load_start, *at),
                requests: 0,
                lost: 0,
                failed: 0,
                timed_out: 0,
                dropped: 0,
                by_class: BTreeMap::new(),
                lost_pct_of_run: 0.0,
                in_flight_at_fault: None,
                failed_on_target: None,
                left_targets_after_s: None,
                picked_while_out: None,
                recovered_after_s: None,
                slo_hurt: false,
                replacement_ready_after_s: None,
                replacement_serving_after_s: None,
                replacement: None,
                autoscaler: AutoscalerReaction::default(),
            },
        })
        .collect();
    ChaosReport {
        slo: run.slo.to_string(),
        hold_s: hold.as_secs_f64(),
        bucket_s: bucket.as_secs_f64(),
        faults,
        thresholds: Vec::new(),
    }
}

fn since(origin: Instant, t: Instant) -> f64 {
    let s = t.saturating_duration_since(origin).as_secs_f64();
    (s * 1000.0).round() / 1000.0
}

fn measure_one(
    record: &FaultRecord,
    log: &[RequestRecord],
    run: &Measured<'_>,
    hold: Duration,
    bucket: Duration,
) -> FaultReport {
    let t0 = record.at;
    let after = |t: Instant| since(t0, t);
    let recovered = recovery(log, t0, run, bucket);
    let last_end = log.iter().map(|r| r.ended).max().unwrap_or(t0);
    let window_end = recovered.map_or(last_end.max(t0), |r| t0 + r + hold);

    // --- the requests lost in the window, by class ----------------------------------------------------
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    let (mut requests, mut failed, mut timed_out, mut dropped) = (0, 0, 0, 0);
    for r in log
        .iter()
        .filter(|r| r.ended >= t0 && r.ended <= window_end)
    {
        requests += 1;
        let class = match r.outcome {
            Some(Outcome::Ok) => continue,
            Some(Outcome::Timeout) => {
                timed_out += 1;
                Outcome::Timeout.label()
            }
            Some(other) => {
                failed += 1;
                other.label()
            }
            None => {
                dropped += 1;
                "dropped"
            }
        };
        *by_class.entry(class.to_string()).or_default() += 1;
    }
    let lost = failed + timed_out + dropped;

    // --- the replica it hit: what was open on it, what failed on it ------------------------------------
    let url = record.replica.as_ref().and_then(|h| h.url.as_deref());
    let on_target =
        |r: &&RequestRecord| url.is_some_and(|u| r.target.as_ref().is_some_and(|t| t.url == u));
    let in_flight = url.map(|_| {
        log.iter()
            .filter(on_target)
            .filter(|r| r.picked.is_some_and(|p| p < t0) && r.ended >= t0)
            .count() as u64
    });
    let failed_on_target = url.map(|_| {
        log.iter()
            .filter(on_target)
            .filter(|r| r.ended >= t0 && r.outcome.is_some_and(|o| o != Outcome::Ok))
            .count() as u64
    });

    let left = record.freeze.left;
    let picked_while_out = left.filter(|_| url.is_some()).map(|left| {
        let back = record.freeze.returned;
        log.iter()
            .filter(on_target)
            .filter(|r| {
                r.picked
                    .is_some_and(|p| p >= left && back.is_none_or(|b| p < b))
            })
            .count() as u64
    });

    // --- the replacement, or the return ----------------------------------------------------------------
    let first_served_by = |name: &str, from: Instant| {
        log.iter()
            .filter(|r| r.served_by.as_deref() == Some(name) && r.picked.is_some_and(|p| p >= from))
            .map(|r| r.ended)
            .min()
    };
    let (ready, serving, replacement) = match record.fault.action {
        ChaosAction::Kill | ChaosAction::Terminate => {
            // A killed replica's place restarts after the back-off: a replica the controller added meanwhile is a
            // scale-up, not the replacement.
            let from = match (record.fault.action, record.duration) {
                (ChaosAction::Kill, Some(backoff)) => t0 + backoff,
                _ => record.asked,
            };
            let next = run
                .lives
                .iter()
                .filter(|l| l.started >= from && l.ready.is_some())
                .min_by_key(|l| l.started);
            match next {
                Some(life) => {
                    let ready = life.ready.expect("filtered");
                    (
                        Some(ready),
                        first_served_by(&life.name, ready),
                        Some(life.name.clone()),
                    )
                }
                None => (None, None, None),
            }
        }
        ChaosAction::Freeze => {
            let back = record.freeze.returned;
            let name = record.replica.as_ref().map(|h| h.name.clone());
            let serving = match (back, &name) {
                (Some(b), Some(n)) => first_served_by(n, b),
                _ => None,
            };
            (back, serving, name)
        }
        ChaosAction::KillScaler | ChaosAction::FreezeScaler => {
            let serving = record.scaler_back.and_then(|back| {
                run.decisions
                    .iter()
                    .map(|d| (run.epoch + Duration::from_secs_f64(d.t_s), d))
                    .find(|(t, d)| *t >= back && d.metrics.iter().all(|m| !failing(&m.status)))
                    .map(|(t, _)| t)
            });
            (record.scaler_back, serving, Some("scaler".to_string()))
        }
    };

    // --- the autoscaler meanwhile ----------------------------------------------------------------------
    let react_end = [Some(window_end), serving, ready]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(window_end);
    let autoscaler = reaction(run, t0, react_end);

    let total = log.len().max(1) as f64;
    FaultReport {
        at_s: since(run.load_start, t0),
        action: record.fault.action.to_string(),
        target: record.fault.target.to_string(),
        hit: record.hit.clone().ok(),
        error: record.hit.clone().err(),
        duration_s: record.duration.map(|d| d.as_secs_f64()),
        window_end_s: since(run.load_start, window_end),
        requests,
        lost,
        failed,
        timed_out,
        dropped,
        by_class,
        lost_pct_of_run: (lost as f64 / total * 100.0 * 1000.0).round() / 1000.0,
        in_flight_at_fault: in_flight,
        failed_on_target,
        left_targets_after_s: left.map(after),
        picked_while_out,
        recovered_after_s: recovered.map(|d| d.as_secs_f64()),
        slo_hurt: recovered.is_none_or(|d| !d.is_zero()),
        replacement_ready_after_s: ready.map(after),
        replacement_serving_after_s: serving.map(after),
        replacement,
        autoscaler,
    }
}

/// A trigger's status in the decision log says it could not be read (or stood in for by the fallback).
fn failing(status: &str) -> bool {
    status.starts_with("error") || status.starts_with("fallback")
}

/// From the fault, the first bucket from which every bucket of a hold window met the SLO (`None`: not within the load
/// and its drain).
fn recovery(
    log: &[RequestRecord],
    t0: Instant,
    run: &Measured<'_>,
    bucket: Duration,
) -> Option<Duration> {
    let last_end = log.iter().map(|r| r.ended).max()?;
    let limit = last_end.max(run.load_end);
    let n =
        (limit.saturating_duration_since(t0).as_secs_f64() / bucket.as_secs_f64()).floor() as u32;
    let good: Vec<bool> = (0..n)
        .map(|k| {
            let b0 = t0 + bucket * k;
            bucket_meets_slo(log, b0, b0 + bucket, run.slo)
        })
        .collect();
    let need = BUCKETS_PER_HOLD as usize;
    (0..good.len().saturating_sub(need - 1))
        .find(|&k| good[k..k + need].iter().all(|g| *g))
        .map(|k| bucket * k as u32)
}

fn bucket_meets_slo(log: &[RequestRecord], b0: Instant, b1: Instant, slo: &Slo) -> bool {
    let min_limit = slo
        .latency
        .iter()
        .map(|o| o.limit_s)
        .fold(f64::INFINITY, f64::min);
    let mut ended = 0u64;
    let mut errors = 0u64;
    let mut open = 0u64;
    // Latencies judged: those that ended here, and the age of those still open and already older than a limit.
    let mut latencies: Vec<f64> = Vec::new();
    for r in log {
        if r.ended >= b0 && r.ended < b1 {
            match r.outcome {
                None => return false,
                Some(o) => {
                    ended += 1;
                    if o != Outcome::Ok {
                        errors += 1;
                    }
                    latencies.push(r.latency.as_secs_f64());
                }
            }
        } else if r.scheduled < b1 && r.ended >= b1 {
            open += 1;
            let age = b1.saturating_duration_since(r.scheduled).as_secs_f64();
            if age >= min_limit {
                latencies.push(age);
            }
        }
    }
    if ended == 0 {
        return open == 0;
    }
    if slo
        .max_error_share
        .is_some_and(|max| errors as f64 / ended as f64 >= max)
    {
        return false;
    }
    slo.latency.iter().all(|o| {
        let slow = latencies.iter().filter(|l| **l >= o.limit_s).count() as f64;
        slow / latencies.len() as f64 <= o.percentile.allowance()
    })
}

/// The controller's steps from `from` to `to`.
fn reaction(run: &Measured<'_>, from: Instant, to: Instant) -> AutoscalerReaction {
    let mut a = AutoscalerReaction::default();
    for d in run.decisions {
        let t = run.epoch + Duration::from_secs_f64(d.t_s);
        if t < from || t > to {
            continue;
        }
        a.steps += 1;
        if d.metrics.iter().any(|m| m.status.starts_with("error")) {
            a.failed_readings += 1;
        }
        if let Some(m) = d.metrics.iter().find(|m| m.status.starts_with("fallback")) {
            a.fallback_steps += 1;
            if a.fallback_first_after_s.is_none() {
                a.fallback_first_after_s = Some(since(from, t));
                a.fallback_detail = Some(format!("{}: {}", m.name, m.status));
            }
        }
        if d.metrics
            .iter()
            .any(|m| m.metric_type == "Value" && m.status.starts_with("error"))
        {
            a.value_errors += 1;
        }
        if d.desired != d.current {
            a.changes.push(format!(
                "{:.1}s {} -> {}: {}",
                since(from, t),
                d.current,
                d.desired,
                d.reason
            ));
        }
    }
    a
}
