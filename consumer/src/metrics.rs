//! The consumer's Prometheus metrics, registered from the contract's definitions (`contract::metrics::consumer`:
//! name, help, labels, buckets) in a registry of their own (plus the `/proc` process collector), rendered in the text
//! format at `GET /metrics`. No metric name is written here.

use contract::metrics::consumer as def;
use contract::metrics::{
    JOB_KINDS, JOB_MODES, JOB_OUTCOMES, KAFKA_OUTCOMES, LATENCY_BUCKETS_SECONDS, MetricDef,
};
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alloc;

/// The `kind`, `mode` and `outcome` label values, named after the contract's lists (so a typo cannot compile).
pub mod label {
    use contract::metrics::{JOB_KINDS, JOB_MODES, JOB_OUTCOMES};

    pub const CPU: &str = JOB_KINDS[0];
    pub const MEMORY: &str = JOB_KINDS[1];
    pub const IO: &str = JOB_KINDS[2];
    pub const SUSTAINED: &str = JOB_KINDS[3];
    pub const SYNC: &str = JOB_MODES[0];
    pub const ASYNC: &str = JOB_MODES[1];
    pub const DONE: &str = JOB_OUTCOMES[0];
    pub const FAILED: &str = JOB_OUTCOMES[1];
    pub const CANCELLED: &str = JOB_OUTCOMES[2];
    pub const REJECTED: &str = JOB_OUTCOMES[3];
    pub const PROCESSED: &str = contract::metrics::KAFKA_OUTCOMES[0];
    pub const KAFKA_FAILED: &str = contract::metrics::KAFKA_OUTCOMES[1];
    pub const INVALID: &str = contract::metrics::KAFKA_OUTCOMES[2];
}

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
    pub kafka_messages_total: IntCounterVec,
    pub kafka_processing_duration_seconds: Histogram,
    pub kafka_end_to_end_latency_seconds: Histogram,
    pub kafka_rebalances_total: IntCounter,
    pub kafka_assigned_partitions: IntGauge,
    allocations_total: IntCounter,
    allocated_bytes_total: IntCounter,
    heap_bytes: IntGauge,
    /// Serialises the allocator refresh so two concurrent scrapes cannot add the same delta twice.
    refresh: std::sync::Arc<std::sync::Mutex<()>>,
}

/// Name and help of a contract metric as `prometheus` options.
pub fn opts(def: MetricDef) -> Opts {
    Opts::new(def.name, def.help)
}

fn histogram_opts(def: MetricDef) -> HistogramOpts {
    HistogramOpts::new(def.name, def.help).buckets(LATENCY_BUCKETS_SECONDS.to_vec())
}

fn int_gauge(def: MetricDef) -> IntGauge {
    IntGauge::with_opts(opts(def)).expect("valid metric")
}

fn int_counter(def: MetricDef) -> IntCounter {
    IntCounter::with_opts(opts(def)).expect("valid metric")
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            http_requests_total: IntCounterVec::new(
                opts(def::HTTP_REQUESTS_TOTAL),
                def::HTTP_REQUESTS_TOTAL.labels,
            )
            .expect("valid metric"),
            http_request_duration_seconds: HistogramVec::new(
                histogram_opts(def::HTTP_REQUEST_DURATION_SECONDS),
                def::HTTP_REQUEST_DURATION_SECONDS.labels,
            )
            .expect("valid metric"),
            http_requests_in_flight: int_gauge(def::HTTP_REQUESTS_IN_FLIGHT),
            jobs_queued: int_gauge(def::JOBS_QUEUED),
            jobs_running: int_gauge(def::JOBS_RUNNING),
            executors: int_gauge(def::EXECUTORS),
            jobs_total: IntCounterVec::new(opts(def::JOBS_TOTAL), def::JOBS_TOTAL.labels)
                .expect("valid metric"),
            job_duration_seconds: HistogramVec::new(
                histogram_opts(def::JOB_DURATION_SECONDS),
                def::JOB_DURATION_SECONDS.labels,
            )
            .expect("valid metric"),
            job_queue_wait_seconds: Histogram::with_opts(histogram_opts(
                def::JOB_QUEUE_WAIT_SECONDS,
            ))
            .expect("valid metric"),
            cpu_burn_seconds_total: Counter::with_opts(opts(def::CPU_BURN_SECONDS_TOTAL))
                .expect("valid metric"),
            memory_held_bytes: int_gauge(def::MEMORY_HELD_BYTES),
            memory_budget_bytes: int_gauge(def::MEMORY_BUDGET_BYTES),
            sustained_workers: int_gauge(def::SUSTAINED_WORKERS),
            kafka_messages_total: IntCounterVec::new(
                opts(def::KAFKA_MESSAGES_TOTAL),
                def::KAFKA_MESSAGES_TOTAL.labels,
            )
            .expect("valid metric"),
            kafka_processing_duration_seconds: Histogram::with_opts(histogram_opts(
                def::KAFKA_PROCESSING_DURATION_SECONDS,
            ))
            .expect("valid metric"),
            kafka_end_to_end_latency_seconds: Histogram::with_opts(histogram_opts(
                def::KAFKA_END_TO_END_LATENCY_SECONDS,
            ))
            .expect("valid metric"),
            kafka_rebalances_total: int_counter(def::KAFKA_REBALANCES_TOTAL),
            kafka_assigned_partitions: int_gauge(def::KAFKA_ASSIGNED_PARTITIONS),
            allocations_total: int_counter(def::ALLOCATIONS_TOTAL),
            allocated_bytes_total: int_counter(def::ALLOCATED_BYTES_TOTAL),
            heap_bytes: int_gauge(def::HEAP_BYTES),
            registry,
            refresh: Default::default(),
        };
        let build_info =
            IntGaugeVec::new(opts(def::BUILD_INFO), def::BUILD_INFO.labels).expect("valid metric");
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
            Box::new(metrics.kafka_messages_total.clone()),
            Box::new(metrics.kafka_processing_duration_seconds.clone()),
            Box::new(metrics.kafka_end_to_end_latency_seconds.clone()),
            Box::new(metrics.kafka_rebalances_total.clone()),
            Box::new(metrics.kafka_assigned_partitions.clone()),
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
        for kind in JOB_KINDS {
            // Sustained work is async only.
            let modes: &[&str] = if kind == label::SUSTAINED {
                &[label::ASYNC]
            } else {
                &JOB_MODES
            };
            for mode in modes {
                for outcome in JOB_OUTCOMES {
                    metrics
                        .jobs_total
                        .with_label_values(&[kind, *mode, outcome]);
                }
            }
            metrics.job_duration_seconds.with_label_values(&[kind]);
        }
        for outcome in KAFKA_OUTCOMES {
            metrics.kafka_messages_total.with_label_values(&[outcome]);
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
