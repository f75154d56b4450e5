//! What a fault cost the load, counted from the request log (every request's target, end and outcome) and judged by
//! the run's SLO in short buckets after the fault. One formula for the lab's faults and the cluster's:
//!
//! - a bucket meets the SLO when nothing was dropped, the error share of the requests that ended in it is under the
//!   SLO's, and the share of slow requests is within each latency objective's allowance (p95: 5 %); requests still
//!   open at the bucket's end count as slow once older than the limit (a frozen replica's requests hurt while they
//!   hang, not only when they finally end); a bucket in which nothing ended while requests were open is a stall;
//! - recovered = the first bucket from which the SLO held for the hold window (the scaling report's recovery hold);
//! - lost = the requests that failed, timed out or were dropped from the fault until that window ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use timeline::Slo;

use crate::engine::RequestRecord;
use crate::model::Outcome;

/// How long the SLO must hold to call a fault recovered: the scaling report's 5 s recovery hold, time-scaled.
pub fn hold(time_scale: f64) -> Duration {
    Duration::from_secs_f64((5.0 * time_scale).max(0.5))
}

/// Buckets per hold window.
pub const BUCKETS_PER_HOLD: u32 = 5;

/// Seconds from `origin` to `t`, to the millisecond (0 when `t` is earlier).
pub fn since(origin: Instant, t: Instant) -> f64 {
    let s = t.saturating_duration_since(origin).as_secs_f64();
    (s * 1000.0).round() / 1000.0
}

/// The requests that ended in a window and those of them that were lost, by class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lost {
    pub requests: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub dropped: u64,
    /// By outcome class (`http_error`, `throttled`, `timeout`, `connect_error`, `other_error`, `dropped`).
    pub by_class: BTreeMap<String, u64>,
}

impl Lost {
    /// failed + timed out + dropped.
    pub fn total(&self) -> u64 {
        self.failed + self.timed_out + self.dropped
    }
}

/// Count the requests that ended from `t0` to `end` (both included).
pub fn lost_between(log: &[RequestRecord], t0: Instant, end: Instant) -> Lost {
    let mut lost = Lost::default();
    for r in log.iter().filter(|r| r.ended >= t0 && r.ended <= end) {
        lost.requests += 1;
        let class = match r.outcome {
            Some(Outcome::Ok) => continue,
            Some(Outcome::Timeout) => {
                lost.timed_out += 1;
                Outcome::Timeout.label()
            }
            Some(other) => {
                lost.failed += 1;
                other.label()
            }
            None => {
                lost.dropped += 1;
                "dropped"
            }
        };
        *lost.by_class.entry(class.to_string()).or_default() += 1;
    }
    lost
}

/// From the fault, the first bucket from which every bucket of a hold window met the SLO (`None`: not within the load
/// and its drain, which ends at the later of `load_end` and the last request's end).
pub fn recovery(
    log: &[RequestRecord],
    t0: Instant,
    load_end: Instant,
    slo: &Slo,
    bucket: Duration,
) -> Option<Duration> {
    let last_end = log.iter().map(|r| r.ended).max()?;
    let limit = last_end.max(load_end);
    let n =
        (limit.saturating_duration_since(t0).as_secs_f64() / bucket.as_secs_f64()).floor() as u32;
    let good: Vec<bool> = (0..n)
        .map(|k| {
            let b0 = t0 + bucket * k;
            bucket_meets_slo(log, b0, b0 + bucket, slo)
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

/// The recovery of a fault at `t0`: when the SLO held again (after the fault), and the end of the measured window
/// (the hold after the recovery, else the last request's end).
pub fn window(
    log: &[RequestRecord],
    t0: Instant,
    load_end: Instant,
    slo: &Slo,
    time_scale: f64,
) -> (Option<Duration>, Instant) {
    let hold = hold(time_scale);
    let recovered = recovery(log, t0, load_end, slo, hold / BUCKETS_PER_HOLD);
    let last_end = log.iter().map(|r| r.ended).max().unwrap_or(t0);
    let end = recovered.map_or(last_end.max(t0), |r| t0 + r + hold);
    (recovered, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request every 100 ms for 10 s, 50 ms each; from 2 s to 3 s every one fails, one at 2.5 s is dropped.
    fn log(base: Instant) -> Vec<RequestRecord> {
        (0..100)
            .map(|i| {
                let t = i as f64 / 10.0;
                let start = base + Duration::from_secs_f64(t);
                let outcome = match t {
                    t if (t - 2.5).abs() < 1e-9 => None,
                    t if (2.0..3.0).contains(&t) => Some(Outcome::HttpError),
                    _ => Some(Outcome::Ok),
                };
                RequestRecord {
                    scheduled: start,
                    picked: Some(start),
                    ended: start + Duration::from_millis(50),
                    target: None,
                    served_by: None,
                    outcome,
                    latency: Duration::from_millis(50),
                }
            })
            .collect()
    }

    #[test]
    fn losses_are_counted_by_class_and_recovery_waits_for_the_hold() {
        let base = Instant::now();
        let log = log(base);
        let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
        let t0 = base + Duration::from_secs(2);
        let lost = lost_between(&log, t0, base + Duration::from_secs(4));
        assert_eq!((lost.failed, lost.dropped, lost.timed_out), (9, 1, 0));
        assert_eq!(lost.total(), 10);
        assert_eq!(lost.by_class["http_error"], 9);
        assert_eq!(lost.by_class["dropped"], 1);
        // Buckets of 0.2 s (a 1 s hold at a fifth of the time): the last failure ends at 2.95 s, so the SLO holds
        // from the bucket starting 1 s after the fault, and the window ends a hold later.
        let (recovered, end) = window(&log, t0, base + Duration::from_secs(10), &slo, 0.2);
        assert_eq!(recovered, Some(Duration::from_secs(1)));
        assert_eq!(end, t0 + Duration::from_secs(2));
        // Never hurt: recovered at once.
        let calm = base + Duration::from_secs(5);
        assert_eq!(
            recovery(
                &log,
                calm,
                base + Duration::from_secs(10),
                &slo,
                Duration::from_millis(200)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(since(t0, base), 0.0);
    }
}
