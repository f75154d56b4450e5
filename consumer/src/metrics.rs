//! The consumer's Prometheus metrics, exactly as listed in ARCHITECTURE.md's metric contract, in a registry of
//! their own (plus the `prometheus` crate's process collector), rendered in the text format at `GET /metrics`.

use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alloc;

/// Buckets (seconds) shared by every latency histogram: 1 ms to 30 s, so 5 ms and 2 s thresholds are both exact.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
];

/// Work kinds (`kind` label of the job metrics).
pub const KINDS: &[&str] = &["cpu", "memory", "io", "sustained"];
/// Job outcomes (`outcome` label).
pub const OUTCOMES: &[&str] = &["done", "failed", "cancelled", "rejected"];

/// Every metric the consumer exposes.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub http_requests_in_flight: IntGauge,
    pub jobs_queued: IntGauge,
    pub jobs_running: IntGauge,
    pub executors: IntGauge,
    pub jobs_total: IntCounterVec,
    pub job_duration_seconds: HistogramVec,
    pub job_queue_wait_seconds: Histogram,
    pub cpu_burn_seconds_total: Counter,
    pub memory_held_bytes: IntGauge,
    pub memory_budget_bytes: IntGauge,
    pub sustained_workers: IntGauge,
    allocations_total: IntCounter,
    allocated_bytes_total: IntCounter,
    heap_bytes: IntGauge,
    /// Serialises the allocator refresh so two concurrent scrapes cannot add the same delta twice.
    refresh: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            http_requests_total: IntCounterVec::new(
                Opts::new("http_requests_total", "Requests answered, by method, matched route template and status code."),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
            http_request_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from request received to response head sent, by method and route template.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method", "route"],
            )
            .expect("valid metric"),
            http_requests_in_flight: IntGauge::new("http_requests_in_flight", "Requests being served now.")
                .expect("valid metric"),
            jobs_queued: IntGauge::new(
                "consumer_jobs_queued",
                "Work waiting for an executor slot: queued async jobs plus sync requests waiting for a slot.",
            )
            .expect("valid metric"),
            jobs_running: IntGauge::new("consumer_jobs_running", "Work (async jobs and sync requests) holding an executor slot now.")
                .expect("valid metric"),
            executors: IntGauge::new("consumer_executors", "Executor slots of this replica.").expect("valid metric"),
            jobs_total: IntCounterVec::new(
                Opts::new("consumer_jobs_total", "Work items finished or refused, by kind, mode and outcome."),
                &["kind", "mode", "outcome"],
            )
            .expect("valid metric"),
            job_duration_seconds: HistogramVec::new(
                HistogramOpts::new("consumer_job_duration_seconds", "Work time of a job, excluding queue wait.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["kind"],
            )
            .expect("valid metric"),
            job_queue_wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "consumer_job_queue_wait_seconds",
                    "Time work waited for an executor slot (async jobs and sync requests).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            cpu_burn_seconds_total: Counter::new(
                "consumer_cpu_burn_seconds_total",
                "CPU seconds burned by load work (measured thread CPU time).",
            )
            .expect("valid metric"),
            memory_held_bytes: IntGauge::new("consumer_memory_held_bytes", "Bytes currently held by /load/memory work.")
                .expect("valid metric"),
            memory_budget_bytes: IntGauge::new("consumer_memory_budget_bytes", "The memory budget in force for /load/memory.")
                .expect("valid metric"),
            sustained_workers: IntGauge::new("consumer_sustained_workers", "Sustained-CPU worker threads running now.")
                .expect("valid metric"),
            allocations_total: IntCounter::new(
                "consumer_allocations_total",
                "Heap allocations made by the process (counting global allocator).",
            )
            .expect("valid metric"),
            allocated_bytes_total: IntCounter::new(
                "consumer_allocated_bytes_total",
                "Bytes allocated by the process (counting global allocator).",
            )
            .expect("valid metric"),
            heap_bytes: IntGauge::new("consumer_heap_bytes", "Heap bytes allocated and not yet freed.").expect("valid metric"),
            registry,
            refresh: Default::default(),
        };
        let build_info = IntGaugeVec::new(
            Opts::new("consumer_build_info", "Build identity; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.http_requests_total.clone()),
            Box::new(metrics.http_request_duration_seconds.clone()),
            Box::new(metrics.http_requests_in_flight.clone()),
            Box::new(metrics.jobs_queued.clone()),
            Box::new(metrics.jobs_running.clone()),
            Box::new(metrics.executors.clone()),
            Box::new(metrics.jobs_total.clone()),
            Box::new(metrics.job_duration_seconds.clone()),
            Box::new(metrics.job_queue_wait_seconds.clone()),
            Box::new(metrics.cpu_burn_seconds_total.clone()),
            Box::new(metrics.memory_held_bytes.clone()),
            Box::new(metrics.memory_budget_bytes.clone()),
            Box::new(metrics.sustained_workers.clone()),
            Box::new(metrics.allocations_total.clone()),
            Box::new(metrics.allocated_bytes_total.clone()),
            Box::new(metrics.heap_bytes.clone()),
            Box::new(build_info),
            Box::new(crate::process::ProcessCollector::new()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }

        // Every kind/mode/outcome series exists from the start, so rate() works before the first job.
        for kind in KINDS {
            let modes: &[&str] = if *kind == "sustained" {
                &["async"]
            } else {
                &["sync", "async"]
            };
            for mode in modes {
                for outcome in OUTCOMES {
                    metrics.jobs_total.with_label_values(&[kind, mode, outcome]);
                }
            }
            metrics.job_duration_seconds.with_label_values(&[kind]);
        }
        metrics
    }

    /// Counts one finished or refused work item.
    pub fn job_finished(&self, kind: &str, mode: &str, outcome: &str) {
        self.jobs_total
            .with_label_values(&[kind, mode, outcome])
            .inc();
    }

    /// Renders the exposition (refreshing the allocator figures first).
    pub fn render(&self) -> String {
        let guard = self
            .refresh
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stats = alloc::stats();
        // Counters only move forward: add what the allocator counted since the last scrape.
        let allocations = stats
            .allocations
            .saturating_sub(self.allocations_total.get());
        self.allocations_total.inc_by(allocations);
        let bytes = stats
            .allocated_bytes
            .saturating_sub(self.allocated_bytes_total.get());
        self.allocated_bytes_total.inc_by(bytes);
        self.heap_bytes
            .set(i64::try_from(stats.heap_bytes).unwrap_or(i64::MAX));
        drop(guard);

        let mut buffer = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of valid metrics cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
