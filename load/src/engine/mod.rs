//! The load engine: an open-model scheduler (requests start at their scheduled times, whatever the target does), a
//! capped pool of workers, latency measured from the scheduled start, per-interval statistics, replica monitoring,
//! and a closed-loop mode (`--rate max`) for capacity tests. [`run_load`] wires the parts together: [`schedule`]
//! decides when requests go, [`dispatch`] sends them, [`collect`] turns what happened into intervals; it returns
//! the run's [`RunData`], from which the `report` module assembles the report.

mod collect;
mod dispatch;
mod options;
mod request_log;
mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::model::{ArrivalMode, Split};
pub use collect::process_cpu_seconds;
pub use dispatch::WeightedRoundRobin;
pub use options::{EngineError, RateControl, RunData, RunOptions};
pub use request_log::{RequestLog, RequestRecord};

use crate::monitor::ReplicaSource;
use crate::profile::{Profile, Schedule};
use crate::stats::{IntervalStats, LatencySummary, Recorder};
use crate::targets::TargetSet;
use dispatch::{Ctx, SchedCounters};

/// Run a profile against a dynamic target set and return what was measured. `progress` receives one `IntervalStats`
/// per interval (dropped if the receiver lags). Cancelling `shutdown` stops scheduling at once, lets in-flight
/// requests finish for `drain_timeout`, and returns partial data with `interrupted: true`.
pub async fn run_load(
    profile: Profile,
    targets: TargetSet,
    opts: RunOptions,
    monitor: Option<Arc<dyn ReplicaSource>>,
    progress: Option<mpsc::Sender<IntervalStats>>,
    shutdown: CancellationToken,
) -> Result<RunData, EngineError> {
    profile.validate()?;
    opts.validate()?;
    let endpoints = dispatch::prepare_endpoints(&profile, &opts.headers)?;
    let endpoint_names: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
    let endpoint_paths: Vec<String> = profile.requests.iter().map(|r| r.path.clone()).collect();
    let schedule = Schedule::new(&profile);
    let shards = (collect::cores_available() as usize * 4).max(4);
    let baseline = match &monitor {
        Some(source) => collect::baseline(source.as_ref(), opts.monitor_interval).await,
        None => None,
    };
    let started_at = SystemTime::now();
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(endpoints.len(), shards)
            .with_latency_limit(opts.slo_latency_limit()),
        endpoints,
        targets,
        sched: Mutex::new(SchedCounters::new()),
        in_flight: AtomicU64::new(0),
        opts: opts.clone(),
        start,
        latest_replicas: Mutex::new(baseline.clone()),
        interrupted: AtomicBool::new(false),
        closed_loop_sent: AtomicU64::new(0),
    });
    let cpu_at_start = process_cpu_seconds();

    let monitor_stop = CancellationToken::new();
    let monitor_task = monitor.clone().map(|source| {
        collect::spawn_monitor(
            ctx.clone(),
            source,
            baseline,
            opts.monitor_interval.max(Duration::from_millis(50)),
            monitor_stop.clone(),
        )
    });
    let collector_stop = CancellationToken::new();
    let load_active = Arc::new(AtomicBool::new(true));
    let collector = collect::spawn_collector(
        ctx.clone(),
        schedule.clone(),
        profile.clone(),
        endpoint_paths,
        load_active.clone(),
        progress,
        collector_stop.clone(),
    );

    let (interrupted, unfinished) = match opts.mode {
        ArrivalMode::Open => schedule::open_model(&ctx, &schedule, &shutdown).await,
        ArrivalMode::ClosedLoop { connections } => {
            let deadline = start + profile.duration();
            let interrupted = schedule::closed_loop(&ctx, connections, deadline, &shutdown).await;
            (interrupted, 0)
        }
    };
    let load_elapsed = start.elapsed();
    ctx.interrupted.store(interrupted, Ordering::Relaxed);
    load_active.store(false, Ordering::Relaxed);
    if let Some(m) = &opts.metrics {
        m.set_target_rate(0.0);
    }

    // Keep watching the replicas after the load, to measure the scale-down.
    if monitor_task.is_some() && !interrupted && !opts.watch_after.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(opts.watch_after) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    let elapsed = start.elapsed();
    monitor_stop.cancel();
    collector_stop.cancel();
    let collected = collector.await.expect("collector task");
    let observed = match monitor_task {
        Some(h) => Some(h.await.expect("monitor task")),
        None => None,
    };
    let cpu_seconds = match (process_cpu_seconds(), cpu_at_start) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let (timeline, monitor_errors, monitor_last_error) = match observed {
        Some(o) => (o.timeline, o.errors, o.last_error),
        None => (Vec::new(), 0, None),
    };
    Ok(RunData {
        mode: opts.mode,
        split: opts.split,
        started_at,
        load_elapsed,
        elapsed,
        interrupted,
        unfinished,
        endpoint_names,
        totals: collected.totals,
        intervals: collected.intervals,
        timeline,
        scaling_record: monitor.as_ref().and_then(|m| m.record()),
        slo: opts.slo.clone(),
        monitor_name: monitor.map(|m| m.name()),
        monitor_errors,
        monitor_last_error,
        expected_requests: schedule.total_count() / f64::from(opts.split.count),
        load_end_s: schedule::load_end_secs(&schedule).min(load_elapsed.as_secs_f64()),
        schedule_lag: LatencySummary::from_histogram(&collected.lag_total),
        generator_cpu_seconds: cpu_seconds,
        targets: ctx.targets.urls(),
        profile,
    })
}
