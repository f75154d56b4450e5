//! The load engine: an open-model scheduler (requests start at their scheduled times, whatever the target does), a
//! capped pool of workers, latency measured from the scheduled start, per-interval statistics, replica monitoring,
//! and a closed-loop mode (`--rate max`) for capacity tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ConnCache, PreparedRequest, RecyclePolicy};
use crate::metrics::GeneratorMetrics;
use crate::monitor::{ReplicaSnapshot, ReplicaSource};
use crate::profile::{Profile, Schedule};
use crate::report::{Report, RunData, TimelinePoint};
use crate::stats::{
    IntervalStats, LatencySummary, Outcome, Recorder, SelfCheck, Shard, new_histogram,
};
use crate::targets::TargetSet;
use crate::trace::Tracing;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error("request entry {index} ({name}): {reason}")]
    Request {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("invalid option {option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
}

/// How arrivals are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalMode {
    /// Open model: the profile's arrival rate, independent of response times.
    Open,
    /// Closed loop: `connections` workers each send the next request as soon as the previous one answered
    /// (`--rate max`). The profile's rates are ignored, its duration and request mix are used.
    ClosedLoop { connections: usize },
}

/// This generator's share of a distributed run (an Indexed Job): it sends requests `k` of the full schedule with
/// `k % count == index`, so N generators together send exactly the profile's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub index: u32,
    pub count: u32,
}

impl Default for Split {
    fn default() -> Self {
        Split { index: 0, count: 1 }
    }
}

/// Options of a run.
#[derive(Clone)]
pub struct RunOptions {
    pub mode: ArrivalMode,
    /// Cap on outstanding requests; a request due when the cap is reached is dropped (counted, never delayed).
    pub max_in_flight: usize,
    /// Per-request timeout, connect included.
    pub timeout: Duration,
    /// Progress interval (each produces one `IntervalStats`).
    pub interval: Duration,
    /// After an interruption, how long in-flight requests may still finish.
    pub drain_timeout: Duration,
    pub recycle: RecyclePolicy,
    pub split: Split,
    /// Extra headers on every request (e.g. `Authorization`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Trace propagation and client spans.
    pub tracing: Option<Arc<Tracing>>,
    /// How often the replica source is polled.
    pub monitor_interval: Duration,
    /// Keep observing replicas this long after the load ends (to see the scale-down).
    pub watch_after: Duration,
    /// Prometheus metrics to update each interval.
    pub metrics: Option<Arc<GeneratorMetrics>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("mode", &self.mode)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .field("recycle", &self.recycle)
            .field("split", &self.split)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: ArrivalMode::Open,
            max_in_flight: 1000,
            timeout: Duration::from_secs(30),
            interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            recycle: RecyclePolicy::default(),
            split: Split::default(),
            headers: Vec::new(),
            tracing: None,
            monitor_interval: Duration::from_secs(2),
            watch_after: Duration::ZERO,
            metrics: None,
        }
    }
}

/// One prepared mix entry.
struct Endpoint {
    name: String,
    request: PreparedRequest,
    weight: u32,
}

/// Smooth weighted round-robin (as nginx does): deterministic, and each window of `sum(weights)` picks follows the
/// weights exactly.
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    pub fn new(weights: &[u32]) -> WeightedRoundRobin {
        WeightedRoundRobin {
            weights: weights.iter().map(|w| i64::from(*w)).collect(),
            current: vec![0; weights.len()],
            total: weights.iter().map(|w| i64::from(*w)).sum(),
        }
    }

    pub fn next_index(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

struct Job {
    endpoint: usize,
    scheduled: Instant,
}

/// Counters the scheduler keeps per interval.
struct SchedCounters {
    scheduled: u64,
    sent: u64,
    dropped: u64,
    lag: Histogram<u64>,
}

impl SchedCounters {
    fn new() -> SchedCounters {
        SchedCounters {
            scheduled: 0,
            sent: 0,
            dropped: 0,
            lag: new_histogram(),
        }
    }
}

/// Shared between scheduler, workers, collector.
struct Ctx {
    endpoints: Vec<Endpoint>,
    targets: TargetSet,
    recorder: Recorder,
    sched: Mutex<SchedCounters>,
    in_flight: AtomicU64,
    opts: RunOptions,
    start: Instant,
    latest_replicas: Mutex<Option<ReplicaSnapshot>>,
    interrupted: std::sync::atomic::AtomicBool,
    /// Requests started by closed-loop workers since the last interval.
    closed_loop_sent: AtomicU64,
}

impl Ctx {
    async fn run_one(&self, cache: &mut ConnCache, shard: usize, job: Job) {
        let ep = &self.endpoints[job.endpoint];
        cache.sync_with(&self.targets);
        let Some(target) = self.targets.next() else {
            // No target: nothing to connect to (the lab may have none ready yet).
            self.recorder.record(
                shard,
                job.endpoint,
                Outcome::ConnectError,
                Duration::ZERO,
                None,
                None,
            );
            return;
        };
        let span = self
            .opts
            .tracing
            .as_ref()
            .and_then(|t| t.start(&ep.name, &ep.request, &target, job.scheduled));
        let executed = cache
            .execute(
                &target,
                &ep.request,
                self.opts.timeout,
                span.as_ref().map(|s| s.traceparent()),
            )
            .await;
        let latency = job.scheduled.elapsed();
        if let (Some(t), Some(span)) = (self.opts.tracing.as_ref(), span) {
            t.finish(span, &executed);
        }
        let served_by = executed.served_by.as_ref().and_then(|v| v.to_str().ok());
        self.recorder.record(
            shard,
            job.endpoint,
            executed.outcome,
            latency,
            executed.status,
            served_by,
        );
    }
}

/// The worker pool of the open model: idle workers wait on their own channel; the scheduler hands a due request to an
/// idle worker, spawns one if the cap allows, or drops the request.
struct Pool {
    idle: Arc<Mutex<Vec<usize>>>,
    senders: Vec<mpsc::Sender<Job>>,
    tasks: JoinSet<()>,
}

impl Pool {
    fn dispatch(&mut self, ctx: &Arc<Ctx>, job: Job) -> Result<(), Job> {
        let idle = self.idle.lock().expect("pool lock").pop();
        if let Some(id) = idle {
            ctx.in_flight.fetch_add(1, Ordering::Relaxed);
            return self.senders[id].try_send(job).map_err(|e| {
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                }
            });
        }
        if self.senders.len() >= ctx.opts.max_in_flight {
            return Err(job);
        }
        let id = self.senders.len();
        let (tx, mut rx) = mpsc::channel::<Job>(1);
        self.senders.push(tx);
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        let idle = self.idle.clone();
        let shard = id % ctx.recorder.shard_count();
        self.tasks.spawn(async move {
            let mut cache = ConnCache::new(ctx.opts.recycle);
            let mut next = Some(job);
            while let Some(job) = match next.take() {
                Some(j) => Some(j),
                None => rx.recv().await,
            } {
                ctx.run_one(&mut cache, shard, job).await;
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                idle.lock().expect("pool lock").push(id);
            }
        });
        Ok(())
    }
}

fn prepare_endpoints(
    profile: &Profile,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Vec<Endpoint>, EngineError> {
    profile
        .requests
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let name = r.display_name();
            let err = |reason: String| EngineError::Request {
                index,
                name: name.clone(),
                reason,
            };
            let method = Method::from_bytes(r.method.as_bytes())
                .map_err(|_| err(format!("bad method {:?}", r.method)))?;
            let body = r.body.as_ref().map(|b| Bytes::from(b.to_string()));
            let request = PreparedRequest::new(method, &r.path, body, headers.to_vec())
                .map_err(|e| err(format!("bad path {:?}: {e}", r.path)))?;
            Ok(Endpoint {
                name: name.clone(),
                request,
                weight: r.weight,
            })
        })
        .collect()
}

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

fn cores_available() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// The last time the arrival rate is at least half its peak: where "the load ends" for the scale-down analysis.
fn load_end_secs(schedule: &Schedule) -> f64 {
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

/// Run a profile against a dynamic target set and return the report. `progress` receives one `IntervalStats` per
/// interval (dropped if the receiver lags). Cancelling `shutdown` stops scheduling at once, lets in-flight requests
/// finish for `drain_timeout`, and returns a partial report with `interrupted: true`.
pub async fn run_load(
    profile: Profile,
    targets: TargetSet,
    opts: RunOptions,
    monitor: Option<Arc<dyn ReplicaSource>>,
    progress: Option<mpsc::Sender<IntervalStats>>,
    shutdown: CancellationToken,
) -> Result<Report, EngineError> {
    profile.validate()?;
    if opts.split.count == 0 || opts.split.index >= opts.split.count {
        return Err(EngineError::Option {
            option: "split",
            reason: format!(
                "index {} must be below the pod count {}",
                opts.split.index, opts.split.count
            ),
        });
    }
    if opts.max_in_flight == 0 {
        return Err(EngineError::Option {
            option: "max_in_flight",
            reason: "must be >= 1".into(),
        });
    }
    if opts.interval < Duration::from_millis(10) {
        return Err(EngineError::Option {
            option: "interval",
            reason: "must be >= 10ms".into(),
        });
    }
    if let ArrivalMode::ClosedLoop { connections: 0 } = opts.mode {
        return Err(EngineError::Option {
            option: "connections",
            reason: "must be >= 1".into(),
        });
    }
    let endpoints = prepare_endpoints(&profile, &opts.headers)?;
    let endpoint_names: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
    let endpoint_paths: Vec<String> = profile.requests.iter().map(|r| r.path.clone()).collect();
    let schedule = Schedule::new(&profile);
    let shards = (cores_available() as usize * 4).max(4);
    // A baseline observation before any load, so "initial replicas" and the time to scale are measured from a state
    // the load has not touched yet (bounded: a slow source must not hold the run back).
    let baseline = match &monitor {
        Some(source) => {
            let wait = opts
                .monitor_interval
                .clamp(Duration::from_millis(500), Duration::from_secs(5));
            tokio::time::timeout(wait, source.observe())
                .await
                .ok()
                .and_then(Result::ok)
        }
        None => None,
    };
    let started_at = SystemTime::now();
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(endpoints.len(), shards),
        endpoints,
        targets,
        sched: Mutex::new(SchedCounters::new()),
        in_flight: AtomicU64::new(0),
        opts: opts.clone(),
        start,
        latest_replicas: Mutex::new(baseline.clone()),
        interrupted: std::sync::atomic::AtomicBool::new(false),
        closed_loop_sent: AtomicU64::new(0),
    });
    let cpu_at_start = process_cpu_seconds();

    // Replica monitor.
    let monitor_stop = CancellationToken::new();
    let monitor_task = monitor.clone().map(|source| {
        let ctx = ctx.clone();
        let stop = monitor_stop.clone();
        let every = opts.monitor_interval.max(Duration::from_millis(50));
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
            (timeline, errors, last_error)
        })
    });

    // Interval collector.
    let collector_stop = CancellationToken::new();
    let collector = {
        let ctx = ctx.clone();
        let stop = collector_stop.clone();
        let schedule = schedule.clone();
        let profile = profile.clone();
        let endpoint_paths = endpoint_paths.clone();
        let load_active = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let load_active_for_task = load_active.clone();
        let handle = tokio::spawn(async move {
            let mut totals = Shard::new(ctx.endpoints.len());
            let mut intervals: Vec<IntervalStats> = Vec::new();
            let mut lag_total = new_histogram();
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
                let load_on = load_active_for_task.load(Ordering::Relaxed)
                    || !ctx.interrupted.load(Ordering::Relaxed);
                let target_rate = if load_on && matches!(ctx.opts.mode, ArrivalMode::Open) {
                    (schedule.cumulative(end_s) - schedule.cumulative(start_s))
                        / width
                        / f64::from(ctx.opts.split.count)
                } else {
                    0.0
                };
                let cpu = process_cpu_seconds();
                let cpu_cores = match (cpu, last_cpu) {
                    (Some(now), Some(before)) => (now - before) / width,
                    _ => 0.0,
                };
                last_cpu = cpu;
                let lag_ms = |q: f64| {
                    if sc.lag.is_empty() {
                        0.0
                    } else {
                        sc.lag.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                let (lag_p50_ms, lag_p99_ms) = (lag_ms(0.5), lag_ms(0.99));
                let _ = lag_total.add(&sc.lag);
                let achieved_rate = overall.completed() as f64 / width;
                // The generator is the bottleneck when it cannot start requests on time although it has the slots to:
                // most of its requests start late (a high median lag, not a few OS scheduling hiccups in the tail, which
                // a busy node shows without the rate suffering), or it burns every core while falling short.
                let short = target_rate > 0.0
                    && (sc.sent as f64) < 0.9 * target_rate * width
                    && sc.scheduled > 0;
                let saturated = width >= ctx.opts.interval.as_secs_f64() * 0.5
                    && ((lag_p99_ms > 50.0 && lag_p50_ms > 5.0)
                        || (cpu_cores >= 0.9 * cores && short));
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
                    replicas: ctx.latest_replicas.lock().expect("replica lock").clone(),
                    self_check: SelfCheck {
                        schedule_lag_p99_ms: lag_p99_ms,
                        cpu_cores,
                        cores_available: cores,
                        saturated,
                    },
                };
                if let Some(m) = &ctx.opts.metrics {
                    m.observe_interval(&endpoint_paths, &shard, target_rate);
                }
                totals.merge(&shard);
                // A sliver of an interval at the very end carries no information of its own; fold it into totals only.
                if !stopping
                    || width >= ctx.opts.interval.as_secs_f64() * 0.2
                    || intervals.is_empty()
                {
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
            (totals, intervals, lag_total)
        });
        (handle, load_active)
    };
    let (collector_handle, load_active) = collector;

    // Load phase.
    let interrupted;
    let mut unfinished = 0u64;
    match opts.mode {
        ArrivalMode::Open => {
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
            while let Some(t) = schedule.time_of(k as f64) {
                let due = start + Duration::from_secs_f64(t);
                if due > Instant::now() {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => { was_interrupted = true; break; }
                        _ = tokio::time::sleep_until(due) => {}
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
                match pool.dispatch(&ctx, job) {
                    Ok(()) => {
                        let mut sc = ctx.sched.lock().expect("sched lock");
                        sc.scheduled += 1;
                        sc.sent += 1;
                        sc.lag.saturating_record(
                            lag.as_micros().clamp(1, u128::from(u64::MAX)) as u64
                        );
                    }
                    Err(_) => {
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
            interrupted = was_interrupted;
        }
        ArrivalMode::ClosedLoop { connections } => {
            let deadline = start + profile.duration();
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
            interrupted = was_interrupted;
        }
    }
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
    let (totals, intervals, lag_total) = collector_handle.await.expect("collector task");
    let (timeline, monitor_errors, monitor_last_error) = match monitor_task {
        Some(h) => h.await.expect("monitor task"),
        None => (Vec::new(), 0, None),
    };
    let cpu_seconds = match (process_cpu_seconds(), cpu_at_start) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let data = RunData {
        profile: profile.clone(),
        mode: opts.mode,
        split: opts.split,
        started_at,
        load_elapsed,
        elapsed,
        interrupted,
        unfinished,
        endpoint_names,
        totals,
        intervals,
        timeline,
        monitor_name: monitor.map(|m| m.name()),
        monitor_errors,
        monitor_last_error,
        expected_requests: schedule.total_count() / f64::from(opts.split.count),
        load_end_s: load_end_secs(&schedule).min(load_elapsed.as_secs_f64()),
        schedule_lag: LatencySummary::from_histogram(&lag_total),
        generator_cpu_seconds: cpu_seconds,
        targets: ctx.targets.urls(),
    };
    Ok(Report::assemble(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_follows_weights() {
        let mut w = WeightedRoundRobin::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| w.next_index()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn cpu_seconds_readable() {
        assert!(process_cpu_seconds().is_some());
    }

    #[test]
    fn load_end_of_demo() {
        let s = Schedule::new(&Profile::builtin("demo").unwrap());
        let end = load_end_secs(&s);
        // ramp-down from 50 to 5 over 50..55 s crosses 25 req/s at ~52.8 s
        assert!((end - 52.8).abs() < 0.3, "{end}");
    }
}
