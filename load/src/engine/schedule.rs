//! Scheduling: when each request is due and who sends it. The open model sends request `k` of the profile's
//! schedule at its time whatever the target does (this pod's share when split); the closed loop keeps
//! `connections` workers busy back to back. Both stop at once on `shutdown` and drain in-flight requests.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatch::{Ctx, Job, Pool, WeightedRoundRobin};
use crate::client::ConnCache;
use crate::profile::Schedule;

/// The last time the arrival rate is at least half its peak: where "the load ends" for the scale-down analysis.
pub(crate) fn load_end_secs(schedule: &Schedule) -> f64 {
    let total = schedule.duration_secs();
    let step = 0.1;
    let mut peak: f64 = 0.0;
    let mut t = 0.0;
    while t < total {
        peak = peak.max(schedule.rate_at(t));
        t += step;
    }
    let mut end = 0.0;
    let mut t = 0.0;
    while t < total {
        if schedule.rate_at(t) >= peak * 0.5 && peak > 0.0 {
            end = t + step;
        }
        t += step;
    }
    end.min(total)
}

/// The open model's schedule under a rate multiplier: since the profile's count `base` (at the last change) request
/// `k0` was due; later requests follow at `multiplier` times the profile's rate.
#[derive(Debug, Clone, Copy)]
struct RatePlan {
    multiplier: f64,
    base: f64,
    k0: u64,
}

impl RatePlan {
    fn new(multiplier: f64) -> RatePlan {
        RatePlan {
            multiplier,
            base: 0.0,
            k0: 0,
        }
    }

    /// The profile's count at which request `k` is due.
    fn profile_count(&self, k: u64) -> f64 {
        self.base + (k.saturating_sub(self.k0)) as f64 / self.multiplier
    }

    /// Re-planned at the profile's count `now` where request `k` is the next one: the part of a request's gap still
    /// to wait is kept, at the new rate.
    fn changed(self, multiplier: f64, now: f64, k: u64) -> RatePlan {
        let ahead = (self.profile_count(k) - now).max(0.0);
        RatePlan {
            multiplier,
            base: now + ahead * self.multiplier / multiplier,
            k0: k,
        }
    }
}

/// The open model: returns whether `shutdown` interrupted it and how many requests were still outstanding after the
/// drain.
pub(crate) async fn open_model(
    ctx: &Arc<Ctx>,
    schedule: &Schedule,
    shutdown: &CancellationToken,
) -> (bool, u64) {
    let opts = &ctx.opts;
    let start = ctx.start;
    let mut unfinished = 0u64;
    let mut pool = Pool {
        idle: Arc::new(Mutex::new(Vec::new())),
        senders: Vec::new(),
        tasks: JoinSet::new(),
    };
    let weights: Vec<u32> = ctx.endpoints.iter().map(|e| e.weight).collect();
    let mut mix = WeightedRoundRobin::new(&weights);
    let step = u64::from(opts.split.count);
    let mut k = u64::from(opts.split.index);
    let mut was_interrupted = false;
    // With a live multiplier m set at time t0, request k is due where the profile's own count reaches
    // N(t0) + (k - k0) / m: the schedule from t0 on at m times its rate (exact, also for ramps). Without a rate
    // control this is `time_of(k)`, the profile's schedule unchanged.
    let mut plan = RatePlan::new(opts.rate.as_ref().map_or(1.0, |r| r.get()));
    'schedule: while let Some(t) = schedule.time_of(plan.profile_count(k)) {
        let due = start + Duration::from_secs_f64(t);
        if due > Instant::now() {
            match &opts.rate {
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => { was_interrupted = true; break; }
                    _ = tokio::time::sleep_until(due) => {}
                },
                Some(rate) => {
                    // Wake at least every POLL to notice a new multiplier and re-plan from now.
                    let wake = due.min(Instant::now() + super::RateControl::POLL);
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => { was_interrupted = true; break; }
                        _ = tokio::time::sleep_until(wake) => {}
                    }
                    let m = rate.get();
                    if m != plan.multiplier {
                        let now_s = start.elapsed().as_secs_f64();
                        plan = plan.changed(m, schedule.cumulative(now_s), k);
                    }
                    if wake < due {
                        continue 'schedule;
                    }
                }
            }
        } else if shutdown.is_cancelled() {
            was_interrupted = true;
            break;
        }
        let endpoint = mix.next_index();
        let job = Job {
            endpoint,
            scheduled: due,
        };
        let lag = Instant::now().saturating_duration_since(due);
        match pool.dispatch(ctx, job) {
            Ok(()) => {
                let mut sc = ctx.sched.lock().expect("sched lock");
                sc.scheduled += 1;
                sc.sent += 1;
                sc.lag
                    .saturating_record(lag.as_micros().clamp(1, u128::from(u64::MAX)) as u64);
            }
            Err(job) => {
                ctx.log(&job, None, None, None);
                let mut sc = ctx.sched.lock().expect("sched lock");
                sc.scheduled += 1;
                sc.dropped += 1;
                drop(sc);
                ctx.recorder.record_dropped(0, endpoint, 1);
            }
        }
        k += step;
    }
    // Wait for the remaining in-flight requests: all of them normally (each is bounded by the timeout), at
    // most `drain_timeout` after an interruption.
    pool.senders.clear();
    let drain = if was_interrupted {
        opts.drain_timeout
    } else {
        opts.timeout + Duration::from_secs(1)
    };
    let drained = tokio::time::timeout(drain, async {
        while pool.tasks.join_next().await.is_some() {}
    });
    tokio::select! {
        r = drained => { if r.is_err() { unfinished = ctx.in_flight.load(Ordering::Relaxed); } }
        _ = shutdown.cancelled(), if !was_interrupted => {
            was_interrupted = true;
            let _ = tokio::time::timeout(opts.drain_timeout, async {
                while pool.tasks.join_next().await.is_some() {}
            }).await;
            unfinished = ctx.in_flight.load(Ordering::Relaxed);
        }
    }
    pool.tasks.abort_all();
    (was_interrupted, unfinished)
}

/// The closed loop until `deadline`: returns whether `shutdown` interrupted it.
pub(crate) async fn closed_loop(
    ctx: &Arc<Ctx>,
    connections: usize,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> bool {
    let opts = &ctx.opts;
    let mut tasks = JoinSet::new();
    let weights: Vec<u32> = ctx.endpoints.iter().map(|e| e.weight).collect();
    // Workers poll a plain flag between requests: a CancellationToken's waiter list costs a lock per
    // request at these rates. After a shutdown, in-flight requests finish or are aborted after the drain.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    for id in 0..connections {
        let ctx = ctx.clone();
        let stop = stop.clone();
        let mut mix = WeightedRoundRobin::new(&weights);
        // Spread the first picks so that all workers do not hit the same entry at once.
        for _ in 0..id % weights.len().max(1) {
            mix.next_index();
        }
        let shard = id % ctx.recorder.shard_count();
        tasks.spawn(async move {
            let mut cache = ConnCache::new(ctx.opts.recycle);
            loop {
                let now = Instant::now();
                if now >= deadline || stop.load(Ordering::Relaxed) {
                    break;
                }
                let endpoint = mix.next_index();
                let job = Job {
                    endpoint,
                    scheduled: now,
                };
                ctx.in_flight.fetch_add(1, Ordering::Relaxed);
                ctx.run_one(&mut cache, shard, job).await;
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                // An atomic rather than the scheduler's lock: every worker passes here once per request.
                ctx.closed_loop_sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut was_interrupted = false;
    tokio::select! {
        _ = async { while tasks.join_next().await.is_some() {} } => {}
        _ = shutdown.cancelled() => {
            was_interrupted = true;
            let _ = tokio::time::timeout(opts.drain_timeout, async {
                while tasks.join_next().await.is_some() {}
            }).await;
        }
    }
    tasks.abort_all();
    was_interrupted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn rate_plan_doubles_and_halves_from_the_change() {
        let s = Schedule::new(&Profile::constant(
            10.0,
            Duration::from_secs(10),
            crate::profile::RequestSpec::new("GET", "/", None),
        ));
        let plan = RatePlan::new(1.0);
        assert!((s.time_of(plan.profile_count(20)).unwrap() - 2.0).abs() < 1e-9);
        // At 2 s (count 20) the multiplier doubles: 20 req/s from there on.
        let plan = plan.changed(2.0, s.cumulative(2.0), 20);
        assert!((s.time_of(plan.profile_count(20)).unwrap() - 2.0).abs() < 1e-9);
        assert!((s.time_of(plan.profile_count(40)).unwrap() - 3.0).abs() < 1e-9);
        // At 3 s it halves: 5 req/s.
        let plan = plan.changed(0.5, s.cumulative(3.0), 40);
        assert!((s.time_of(plan.profile_count(45)).unwrap() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn load_end_of_demo() {
        let s = Schedule::new(&Profile::builtin("demo").unwrap());
        let end = load_end_secs(&s);
        // ramp-down from 50 to 5 over 50..55 s crosses 25 req/s at ~52.8 s
        assert!((end - 52.8).abs() < 0.3, "{end}");
    }
}
