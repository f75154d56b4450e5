//! The shared application state: configuration, metrics, the executor, the job store, the memory budget, the
//! sustained pool, and the drain machinery (draining flag, in-flight work count, cancellation tokens).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use axum::http::HeaderValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::executor::Executor;
use crate::jobs::JobStore;
use crate::load::LoadPool;
use crate::load::memory::MemoryBudget;
use crate::load::sustained::SustainedPool;
use crate::metrics::Metrics;

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub pod_name: String,
    /// Pre-built `x-served-by` value.
    pub served_by: HeaderValue,
    pub metrics: Metrics,
    pub executor: Arc<Executor>,
    pub jobs: JobStore,
    pub memory: Arc<MemoryBudget>,
    pub sustained: Arc<SustainedPool>,
    /// Threads that run CPU burns (one per executor slot).
    pub load_threads: LoadPool,
    pub started: Instant,
    pub started_at: SystemTime,
    draining: AtomicBool,
    /// `/load/*` requests being served now (the drain waits for them).
    work_in_flight: AtomicUsize,
    /// Fired when draining starts: queued async jobs are cancelled.
    pub queue_cancel: CancellationToken,
    /// Fired when the grace period ends: running work is cut short.
    pub work_cancel: CancellationToken,
    /// Async and sustained job tasks and the Kafka worker (the drain waits for them).
    pub job_tasks: TaskTracker,
    /// Fired when draining starts: the Kafka worker stops fetching.
    pub drain_started: CancellationToken,
    /// The Kafka worker's group membership, for readiness (`None` outside Kafka mode).
    pub kafka: Option<Membership>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config) -> AppState {
        let metrics = Metrics::new();
        let pod_name = config.effective_pod_name();
        let served_by = HeaderValue::from_str(&pod_name)
            .unwrap_or_else(|_| HeaderValue::from_static("consumer"));
        let executor = Executor::new(config.executors, config.queue_size, metrics.clone());
        let memory = MemoryBudget::new(config.effective_memory_budget(), metrics.clone());
        let sustained = SustainedPool::new(config.max_sustained_workers, metrics.clone());
        let jobs = JobStore::new(
            config.job_retention,
            config.max_retained_jobs,
            pod_name.clone(),
        );
        AppState(Arc::new(Inner {
            pod_name,
            served_by,
            metrics,
            executor,
            jobs,
            memory,
            sustained,
            load_threads: LoadPool::new(config.executors as usize, "load-cpu"),
            started: Instant::now(),
            started_at: SystemTime::now(),
            draining: AtomicBool::new(false),
            work_in_flight: AtomicUsize::new(0),
            queue_cancel: CancellationToken::new(),
            work_cancel: CancellationToken::new(),
            job_tasks: TaskTracker::new(),
            drain_started: CancellationToken::new(),
            kafka: config.kafka_brokers.as_ref().map(|_| Membership::default()),
            config,
        }))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_started.cancel();
    }

    pub fn work_in_flight(&self) -> usize {
        self.work_in_flight.load(Ordering::Acquire)
    }

    /// Counts a `/load/*` request until the guard drops.
    pub fn work_request(&self) -> WorkRequestGuard {
        self.work_in_flight.fetch_add(1, Ordering::AcqRel);
        WorkRequestGuard(self.clone())
    }
}

/// See [`AppState::work_request`].
#[derive(Debug)]
pub struct WorkRequestGuard(AppState);

impl Drop for WorkRequestGuard {
    fn drop(&mut self) {
        self.0.work_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// This member's share of the group, for readiness: unknown until the first assignment.
#[derive(Debug, Clone)]
pub struct Membership(Arc<AtomicI64>);

impl Default for Membership {
    fn default() -> Self {
        Membership(Arc::new(AtomicI64::new(-1)))
    }
}

impl Membership {
    /// Partitions assigned now; `None` before the group's first assignment to this member.
    pub fn assigned(&self) -> Option<u64> {
        u64::try_from(self.0.load(Ordering::Acquire)).ok()
    }

    pub(crate) fn set(&self, partitions: usize) {
        self.0.store(
            i64::try_from(partitions).unwrap_or(i64::MAX),
            Ordering::Release,
        );
    }
}
