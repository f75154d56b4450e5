//! Collection: the replica poller (a baseline before the load, then one observation per monitor interval) and the
//! interval collector that turns each interval's counters into an [`IntervalStats`] (rates, latency, errors,
//! replicas, the generator's self-check), feeds the metrics endpoint and the progress channel, and keeps the totals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dispatch::{Ctx, SchedCounters};
use crate::model::{ArrivalMode, Outcome, ReplicaSnapshot, TimelinePoint};
use crate::monitor::ReplicaSource;
use crate::profile::{Profile, Schedule};
use crate::stats::{IntervalStats, LatencySummary, SelfCheck, Shard, new_histogram};

/// CPU seconds used by this process so far (user + system, all threads), from /proc.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, i.e. 11 and 12 after the state field.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) / 100.0)
}

pub(crate) fn cores_available() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// What the replica poller saw.
pub(crate) struct Observed {
    pub(crate) timeline: Vec<TimelinePoint>,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
}

/// What the interval collector kept: totals, the interval series and every start's lag behind its schedule.
pub(crate) struct Collected {
    pub(crate) totals: Shard,
    pub(crate) intervals: Vec<IntervalStats>,
    pub(crate) lag_total: Histogram<u64>,
}

/// One observation before any load, so "initial replicas" and the time to scale are measured from a state the load
/// has not touched yet (bounded: a slow source must not hold the run back).
pub(crate) async fn baseline(
    source: &dyn ReplicaSource,
    monitor_interval: Duration,
) -> Option<ReplicaSnapshot> {
    let wait = monitor_interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    tokio::time::timeout(wait, source.observe())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Poll `source` every `every` until `stop`; each answer also becomes the latest replicas the intervals carry.
pub(crate) fn spawn_monitor(
    ctx: Arc<Ctx>,
    source: Arc<dyn ReplicaSource>,
    baseline: Option<ReplicaSnapshot>,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<Observed> {
    tokio::spawn(async move {
        let mut timeline: Vec<TimelinePoint> = baseline
            .map(|snapshot| vec![TimelinePoint { t_s: 0.0, snapshot }])
            .unwrap_or_default();
        let mut errors: u64 = 0;
        let mut last_error: Option<String> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let t = ctx.start.elapsed().as_secs_f64();
            let observed = tokio::select! {
                _ = stop.cancelled() => break,
                r = source.observe() => r,
            };
            match observed {
                Ok(snap) => {
                    *ctx.latest_replicas.lock().expect("replica lock") = Some(snap.clone());
                    timeline.push(TimelinePoint {
                        t_s: t,
                        snapshot: snap,
                    });
                }
                Err(e) => {
                    errors += 1;
                    last_error = Some(e.to_string());
                }
            }
        }
        Observed {
            timeline,
            errors,
            last_error,
        }
    })
}

/// Close one interval every `ctx.opts.interval` until `stop` (then one last, partial one). `load_active` turns false
/// when the load phase is over.
pub(crate) fn spawn_collector(
    ctx: Arc<Ctx>,
    schedule: Schedule,
    profile: Profile,
    endpoint_paths: Vec<String>,
    load_active: Arc<AtomicBool>,
    progress: Option<mpsc::Sender<IntervalStats>>,
    stop: CancellationToken,
) -> JoinHandle<Collected> {
    tokio::spawn(async move {
        let mut totals = Shard::new(ctx.endpoints.len());
        let mut intervals: Vec<IntervalStats> = Vec::new();
        let mut lag_total = new_histogram();
        let mut lag_loss_logged = false;
        let mut index = 0u64;
        let mut last_cpu = process_cpu_seconds();
        let mut last_end = 0.0f64;
        let cores = cores_available();
        loop {
            let next = ctx.start + ctx.opts.interval * (index as u32 + 1);
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep_until(next) => false,
            };
            let end_s = ctx.start.elapsed().as_secs_f64();
            let start_s = last_end;
            last_end = end_s;
            let shard = ctx.recorder.drain();
            let mut sc = std::mem::replace(
                &mut *ctx.sched.lock().expect("sched lock"),
                SchedCounters::new(),
            );
            let closed = ctx.closed_loop_sent.swap(0, Ordering::Relaxed);
            sc.scheduled += closed;
            sc.sent += closed;
            let overall = shard.overall();
            let width = (end_s - start_s).max(1e-9);
            // After an interruption nothing is asked for any more; otherwise the schedule says (0 past its end).
            let load_on =
                load_active.load(Ordering::Relaxed) || !ctx.interrupted.load(Ordering::Relaxed);
            let target_rate = if load_on && matches!(ctx.opts.mode, ArrivalMode::Open) {
                (schedule.cumulative(end_s) - schedule.cumulative(start_s))
                    / width
                    / f64::from(ctx.opts.split.count)
                    * ctx.opts.rate.as_ref().map_or(1.0, |r| r.get())
            } else {
                0.0
            };
            let cpu = process_cpu_seconds();
            let cpu_cores = match (cpu, last_cpu) {
                (Some(now), Some(before)) => (now - before) / width,
                _ => 0.0,
            };
            last_cpu = cpu;
            let lag_ms = |q: f64| crate::stats::quantile_ms(&sc.lag, q);
            let (lag_p50_ms, lag_p99_ms) = (lag_ms(0.5), lag_ms(0.99));
            // Both histograms have the same bounds, so this cannot fail today; if it ever does, the report's
            // schedule lag misses an interval, which is said once rather than on every interval.
            if let Err(error) = lag_total.add(&sc.lag)
                && !std::mem::replace(&mut lag_loss_logged, true)
            {
                tracing::warn!(%error, interval = index, "schedule lag of an interval left out of the run's total");
            }
            let achieved_rate = overall.completed() as f64 / width;
            // The generator is the bottleneck when it cannot start requests on time although it has the slots to:
            // most of its requests start late (a high median lag, not a few OS scheduling hiccups in the tail, which
            // a busy node shows without the rate suffering), or it burns every core while falling short.
            let short = target_rate > 0.0
                && (sc.sent as f64) < 0.9 * target_rate * width
                && sc.scheduled > 0;
            let saturated = width >= ctx.opts.interval.as_secs_f64() * 0.5
                && ((lag_p99_ms > 50.0 && lag_p50_ms > 5.0) || (cpu_cores >= 0.9 * cores && short));
            let stage = schedule.stage_at(start_s + width / 2.0).map(|i| {
                profile.stages[i]
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{}", i + 1))
            });
            let mut errors_by_class = BTreeMap::new();
            for o in Outcome::ALL {
                if o != Outcome::Ok && overall.count(o) > 0 {
                    errors_by_class.insert(o.label().to_string(), overall.count(o));
                }
            }
            let stats = IntervalStats {
                index,
                start_s,
                end_s,
                stage: if start_s >= schedule.duration_secs() {
                    Some("watching".into())
                } else {
                    stage
                },
                target_rate,
                scheduled: sc.scheduled,
                sent: sc.sent,
                completed: overall.completed(),
                achieved_rate,
                ok: overall.count(Outcome::Ok),
                errors: overall.errors(),
                errors_by_class,
                dropped: overall.dropped,
                in_flight: ctx.in_flight.load(Ordering::Relaxed),
                latency: LatencySummary::from_histogram(&overall.latency),
                served_by: shard
                    .served_by
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                over_slo: ctx.opts.slo_latency_limit().map(|_| overall.over_limit),
                replicas: ctx.latest_replicas.lock().expect("replica lock").clone(),
                self_check: SelfCheck {
                    schedule_lag_p99_ms: lag_p99_ms,
                    cpu_cores,
                    cores_available: cores,
                    saturated,
                },
                endpoints: crate::stats::EndpointInterval::by_path(&shard, &endpoint_paths, width),
            };
            if let Some(m) = &ctx.opts.metrics {
                m.observe_interval(&endpoint_paths, &shard, target_rate);
            }
            totals.merge(&shard);
            // A sliver of an interval at the very end carries no information of its own; fold it into totals only.
            if !stopping || width >= ctx.opts.interval.as_secs_f64() * 0.2 || intervals.is_empty() {
                if let Some(p) = &progress {
                    let _ = p.try_send(stats.clone());
                }
                intervals.push(stats);
            }
            index += 1;
            if stopping {
                break;
            }
        }
        Collected {
            totals,
            intervals,
            lag_total,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_readable() {
        assert!(process_cpu_seconds().is_some());
    }
}
