//! Every Prometheus metric the lab's binaries export: name, type, labels and help, written once. The consumer, the
//! scaler and the generator register their metrics from these definitions; the scaler's triggers and the generator
//! read the same names back; the dashboard and manifest tests read `contract/metric-contract.json`, which the test
//! `metric_contract_json_is_current` keeps equal to [`contract_json`]. ARCHITECTURE.md explains each one.
//!
//! Names follow Prometheus conventions: base units (seconds, bytes), `_total` for counters, bounded label values.

use serde::Serialize;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricDef {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Buckets (seconds) of every request and work latency histogram (consumer and generator alike, so both sides compare
/// bucket for bucket): 1 ms to 30 s, so 5 ms and 2 s thresholds are both exact.
pub const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
];

/// Label names.
pub mod labels {
    pub const METHOD: &str = "method";
    /// The matched route template (`/jobs/{id}`), never a raw path; [`UNMATCHED_ROUTE`](super::UNMATCHED_ROUTE) for 404s.
    pub const ROUTE: &str = "route";
    pub const STATUS: &str = "status";
    /// Work kind: one of [`JOB_KINDS`](super::JOB_KINDS).
    pub const KIND: &str = "kind";
    /// `sync` or `async`.
    pub const MODE: &str = "mode";
    pub const OUTCOME: &str = "outcome";
    pub const VERSION: &str = "version";
    pub const RPC: &str = "rpc";
    pub const CODE: &str = "code";
    /// `namespace/name` of a ScaledObject.
    pub const SCALED_OBJECT: &str = "scaled_object";
    /// A trigger's metricName.
    pub const TRIGGER: &str = "trigger";
    pub const SOURCE: &str = "source";
    /// The path of a request-mix entry.
    pub const ENDPOINT: &str = "endpoint";
    /// The `le` bucket bound of a histogram series.
    pub const LE: &str = "le";
    /// A Kafka topic (the scaler's `kafka` trigger).
    pub const TOPIC: &str = "topic";
    /// A Kafka partition id.
    pub const PARTITION: &str = "partition";
}

/// `route` label value of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Values of the consumer's `kind` label.
pub const JOB_KINDS: [&str; 4] = ["cpu", "memory", "io", "sustained"];
/// Values of the consumer's `mode` label.
pub const JOB_MODES: [&str; 2] = ["sync", "async"];
/// Values of the consumer's job `outcome` label.
/// `outcome` values of `consumer_kafka_messages_total`.
pub const KAFKA_OUTCOMES: [&str; 3] = ["processed", "failed", "invalid"];
pub const JOB_OUTCOMES: [&str; 4] = ["done", "failed", "cancelled", "rejected"];
/// Values of the generator's `outcome` label.
pub const REQUEST_OUTCOMES: [&str; 6] = [
    "ok",
    "throttled",
    "http_error",
    "timeout",
    "connect_error",
    "other_error",
];

/// The consumer's metrics (`GET /metrics` on its HTTP port).
pub mod consumer {
    use super::{Counter, Gauge, Histogram, MetricDef, def, labels as l};

    pub const HTTP_REQUESTS_TOTAL: MetricDef = def(
        "http_requests_total",
        Counter,
        &[l::METHOD, l::ROUTE, l::STATUS],
        "Requests answered, by method, matched route template and status code.",
    );
    pub const HTTP_REQUEST_DURATION_SECONDS: MetricDef = def(
        "http_request_duration_seconds",
        Histogram,
        &[l::METHOD, l::ROUTE],
        "Time from request received to response head sent, by method and route template.",
    );
    pub const HTTP_REQUESTS_IN_FLIGHT: MetricDef = def(
        "http_requests_in_flight",
        Gauge,
        &[],
        "Requests being served now.",
    );
    pub const JOBS_QUEUED: MetricDef = def(
        "consumer_jobs_queued",
        Gauge,
        &[],
        "Work waiting for an executor slot: queued async jobs plus sync requests waiting for a slot.",
    );
    pub const JOBS_RUNNING: MetricDef = def(
        "consumer_jobs_running",
        Gauge,
        &[],
        "Work (async jobs and sync requests) holding an executor slot now.",
    );
    pub const EXECUTORS: MetricDef = def(
        "consumer_executors",
        Gauge,
        &[],
        "Executor slots of this replica.",
    );
    pub const JOBS_TOTAL: MetricDef = def(
        "consumer_jobs_total",
        Counter,
        &[l::KIND, l::MODE, l::OUTCOME],
        "Work items finished or refused, by kind, mode and outcome.",
    );
    pub const JOB_DURATION_SECONDS: MetricDef = def(
        "consumer_job_duration_seconds",
        Histogram,
        &[l::KIND],
        "Work time of a job, excluding queue wait.",
    );
    pub const JOB_QUEUE_WAIT_SECONDS: MetricDef = def(
        "consumer_job_queue_wait_seconds",
        Histogram,
        &[],
        "Time work waited for an executor slot (async jobs and sync requests).",
    );
    pub const CPU_BURN_SECONDS_TOTAL: MetricDef = def(
        "consumer_cpu_burn_seconds_total",
        Counter,
        &[],
        "CPU seconds burned by load work (measured thread CPU time).",
    );
    pub const MEMORY_HELD_BYTES: MetricDef = def(
        "consumer_memory_held_bytes",
        Gauge,
        &[],
        "Bytes currently held by /load/memory work.",
    );
    pub const MEMORY_BUDGET_BYTES: MetricDef = def(
        "consumer_memory_budget_bytes",
        Gauge,
        &[],
        "The memory budget in force for /load/memory.",
    );
    pub const SUSTAINED_WORKERS: MetricDef = def(
        "consumer_sustained_workers",
        Gauge,
        &[],
        "Sustained-CPU worker threads running now.",
    );
    pub const ALLOCATIONS_TOTAL: MetricDef = def(
        "consumer_allocations_total",
        Counter,
        &[],
        "Heap allocations made by the process (counting global allocator).",
    );
    pub const ALLOCATED_BYTES_TOTAL: MetricDef = def(
        "consumer_allocated_bytes_total",
        Counter,
        &[],
        "Bytes allocated by the process (counting global allocator).",
    );
    pub const HEAP_BYTES: MetricDef = def(
        "consumer_heap_bytes",
        Gauge,
        &[],
        "Heap bytes allocated and not yet freed.",
    );
    pub const BUILD_INFO: MetricDef = def(
        "consumer_build_info",
        Gauge,
        &[l::VERSION],
        "Build identity; always 1.",
    );
    pub const PROCESS_CPU_SECONDS_TOTAL: MetricDef = def(
        "process_cpu_seconds_total",
        Counter,
        &[],
        "Total user and system CPU time spent in seconds.",
    );
    pub const PROCESS_RESIDENT_MEMORY_BYTES: MetricDef = def(
        "process_resident_memory_bytes",
        Gauge,
        &[],
        "Resident memory size in bytes.",
    );
    pub const PROCESS_VIRTUAL_MEMORY_BYTES: MetricDef = def(
        "process_virtual_memory_bytes",
        Gauge,
        &[],
        "Virtual memory size in bytes.",
    );
    pub const PROCESS_OPEN_FDS: MetricDef = def(
        "process_open_fds",
        Gauge,
        &[],
        "Number of open file descriptors.",
    );
    pub const PROCESS_MAX_FDS: MetricDef = def(
        "process_max_fds",
        Gauge,
        &[],
        "Maximum number of open file descriptors.",
    );
    pub const PROCESS_START_TIME_SECONDS: MetricDef = def(
        "process_start_time_seconds",
        Gauge,
        &[],
        "Start time of the process since unix epoch in seconds.",
    );

    pub const KAFKA_MESSAGES_TOTAL: MetricDef = def(
        "consumer_kafka_messages_total",
        Counter,
        &[l::OUTCOME],
        "Kafka messages handled by the consumer's Kafka worker, by outcome (processed, failed, invalid).",
    );
    pub const KAFKA_PROCESSING_DURATION_SECONDS: MetricDef = def(
        "consumer_kafka_processing_duration_seconds",
        Histogram,
        &[],
        "Time from taking a Kafka message to its committed offset (work, report, commit).",
    );
    pub const KAFKA_END_TO_END_LATENCY_SECONDS: MetricDef = def(
        "consumer_kafka_end_to_end_latency_seconds",
        Histogram,
        &[],
        "Processing end minus the message's scheduled send timestamp.",
    );
    pub const KAFKA_REBALANCES_TOTAL: MetricDef = def(
        "consumer_kafka_rebalances_total",
        Counter,
        &[],
        "Consumer-group rebalances this replica took part in (partition assignments received).",
    );
    pub const KAFKA_ASSIGNED_PARTITIONS: MetricDef = def(
        "consumer_kafka_assigned_partitions",
        Gauge,
        &[],
        "Partitions the consumer group currently assigns to this replica.",
    );

    /// Every consumer metric.
    pub const ALL: [MetricDef; 28] = [
        HTTP_REQUESTS_TOTAL,
        HTTP_REQUEST_DURATION_SECONDS,
        HTTP_REQUESTS_IN_FLIGHT,
        JOBS_QUEUED,
        JOBS_RUNNING,
        EXECUTORS,
        JOBS_TOTAL,
        JOB_DURATION_SECONDS,
        JOB_QUEUE_WAIT_SECONDS,
        CPU_BURN_SECONDS_TOTAL,
        MEMORY_HELD_BYTES,
        MEMORY_BUDGET_BYTES,
        SUSTAINED_WORKERS,
        ALLOCATIONS_TOTAL,
        ALLOCATED_BYTES_TOTAL,
        HEAP_BYTES,
        BUILD_INFO,
        PROCESS_CPU_SECONDS_TOTAL,
        PROCESS_RESIDENT_MEMORY_BYTES,
        PROCESS_VIRTUAL_MEMORY_BYTES,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_START_TIME_SECONDS,
        KAFKA_MESSAGES_TOTAL,
        KAFKA_PROCESSING_DURATION_SECONDS,
        KAFKA_END_TO_END_LATENCY_SECONDS,
        KAFKA_REBALANCES_TOTAL,
        KAFKA_ASSIGNED_PARTITIONS,
    ];
}

/// The scaler's metrics (`GET /metrics` on its HTTP port).
pub mod scaler {
    use super::{Counter, Gauge, Histogram, MetricDef, def, labels as l};

    pub const GRPC_REQUESTS_TOTAL: MetricDef = def(
        "scaler_grpc_requests_total",
        Counter,
        &[l::RPC, l::CODE],
        "RPCs answered, by RPC and gRPC code name.",
    );
    pub const GRPC_REQUEST_DURATION_SECONDS: MetricDef = def(
        "scaler_grpc_request_duration_seconds",
        Histogram,
        &[l::RPC],
        "RPC handling time.",
    );
    pub const METRIC_VALUE: MetricDef = def(
        "scaler_metric_value",
        Gauge,
        &[l::SCALED_OBJECT, l::TRIGGER],
        "Last value read for the trigger.",
    );
    pub const METRIC_TARGET: MetricDef = def(
        "scaler_metric_target",
        Gauge,
        &[l::SCALED_OBJECT, l::TRIGGER],
        "The trigger's target.",
    );
    pub const METRIC_AGE_SECONDS: MetricDef = def(
        "scaler_metric_age_seconds",
        Gauge,
        &[l::SCALED_OBJECT, l::TRIGGER],
        "Age of the cached value.",
    );
    pub const ACTIVE: MetricDef = def(
        "scaler_active",
        Gauge,
        &[l::SCALED_OBJECT],
        "Whether any trigger of the ScaledObject is active.",
    );
    pub const SOURCE_ERRORS_TOTAL: MetricDef = def(
        "scaler_source_errors_total",
        Counter,
        &[l::SOURCE],
        "Failed polls per source.",
    );
    pub const SOURCE_POLLS_TOTAL: MetricDef = def(
        "scaler_source_polls_total",
        Counter,
        &[l::SOURCE],
        "Polls made per source.",
    );
    pub const SOURCE_POLL_DURATION_SECONDS: MetricDef = def(
        "scaler_source_poll_duration_seconds",
        Histogram,
        &[l::SOURCE],
        "Poll time per source.",
    );
    pub const STREAMS_OPEN: MetricDef = def(
        "scaler_streams_open",
        Gauge,
        &[l::RPC],
        "Open StreamIsActive / StreamMetricSpec streams.",
    );
    pub const KAFKA_PARTITION_LAG: MetricDef = def(
        "scaler_kafka_partition_lag",
        Gauge,
        &[l::SCALED_OBJECT, l::TRIGGER, l::TOPIC, l::PARTITION],
        "Lag of one partition as a kafka trigger counts it (KEDA's rules applied, before the partition cap).",
    );

    /// Every scaler metric.
    pub const ALL: [MetricDef; 11] = [
        GRPC_REQUESTS_TOTAL,
        GRPC_REQUEST_DURATION_SECONDS,
        METRIC_VALUE,
        METRIC_TARGET,
        METRIC_AGE_SECONDS,
        ACTIVE,
        SOURCE_ERRORS_TOTAL,
        SOURCE_POLLS_TOTAL,
        SOURCE_POLL_DURATION_SECONDS,
        STREAMS_OPEN,
        KAFKA_PARTITION_LAG,
    ];
}

/// The generator's metrics (`GET /metrics` on `--metrics-port`).
pub mod generator {
    use super::{Counter, Gauge, Histogram, MetricDef, def, labels as l};

    pub const REQUESTS_TOTAL: MetricDef = def(
        "generator_requests_total",
        Counter,
        &[l::ENDPOINT, l::OUTCOME],
        "Requests completed, by request-mix endpoint and outcome.",
    );
    pub const REQUEST_DURATION_SECONDS: MetricDef = def(
        "generator_request_duration_seconds",
        Histogram,
        &[l::ENDPOINT],
        "Latency from the scheduled start (no coordinated omission), by endpoint.",
    );
    pub const TARGET_RATE: MetricDef = def(
        "generator_target_rate",
        Gauge,
        &[],
        "Arrival rate this generator is asked for now (requests per second; its share when distributed).",
    );
    pub const DROPPED_TOTAL: MetricDef = def(
        "generator_dropped_total",
        Counter,
        &[],
        "Requests that could not start on time (outstanding cap reached).",
    );

    pub const KAFKA_MESSAGES_TOTAL: MetricDef = def(
        "generator_kafka_messages_total",
        Counter,
        &[l::OUTCOME],
        "Kafka messages produced (`generator produce`), by outcome: acked by the broker or failed.",
    );
    pub const KAFKA_ACK_DURATION_SECONDS: MetricDef = def(
        "generator_kafka_ack_duration_seconds",
        Histogram,
        &[],
        "Time from a Kafka message's scheduled send time to the broker's ack (no coordinated omission).",
    );
    pub const KAFKA_TARGET_RATE: MetricDef = def(
        "generator_kafka_target_rate",
        Gauge,
        &[],
        "Kafka send rate this generator is asked for now (messages per second; its share when distributed).",
    );

    /// Every generator metric.
    pub const ALL: [MetricDef; 7] = [
        REQUESTS_TOTAL,
        REQUEST_DURATION_SECONDS,
        TARGET_RATE,
        DROPPED_TOTAL,
        KAFKA_MESSAGES_TOTAL,
        KAFKA_ACK_DURATION_SECONDS,
        KAFKA_TARGET_RATE,
    ];
}

/// Metrics the dashboards may use beyond the lab's own, by the component that exports them.
pub const EXTERNAL: [(&str, &[&str]); 3] = [
    (
        "kube-state-metrics",
        &[
            "kube_deployment_spec_replicas",
            "kube_deployment_status_replicas",
            "kube_deployment_status_replicas_ready",
            "kube_horizontalpodautoscaler_status_desired_replicas",
            "kube_horizontalpodautoscaler_status_current_replicas",
            "kube_horizontalpodautoscaler_spec_max_replicas",
            "kube_horizontalpodautoscaler_spec_min_replicas",
            "kube_pod_container_resource_requests",
            "kube_pod_container_resource_limits",
        ],
    ),
    ("keda", &["keda_scaler_metrics_value", "keda_scaler_active"]),
    (
        "cadvisor",
        &[
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ],
    ),
];

/// The kube-state-metrics series the generator's Prometheus replica source reads (listed in [`EXTERNAL`] too).
pub mod kube_state_metrics {
    pub const DEPLOYMENT_SPEC_REPLICAS: &str = "kube_deployment_spec_replicas";
    pub const DEPLOYMENT_STATUS_REPLICAS: &str = "kube_deployment_status_replicas";
    pub const DEPLOYMENT_STATUS_REPLICAS_READY: &str = "kube_deployment_status_replicas_ready";
}

/// The whole contract as the JSON document `contract/metric-contract.json` (read by the Python tests).
pub fn contract_json() -> serde_json::Value {
    let external: serde_json::Map<String, serde_json::Value> = EXTERNAL
        .iter()
        .map(|(component, names)| ((*component).to_string(), serde_json::json!(names)))
        .collect();
    serde_json::json!({
        "consumer": consumer::ALL,
        "scaler": scaler::ALL,
        "generator": generator::ALL,
        "external": external,
        "latency_buckets_seconds": LATENCY_BUCKETS_SECONDS,
        "unmatched_route": UNMATCHED_ROUTE,
        "probe_routes": crate::routes::PROBES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    fn all() -> impl Iterator<Item = MetricDef> {
        consumer::ALL
            .into_iter()
            .chain(scaler::ALL)
            .chain(generator::ALL)
    }

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = HashSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Counter,
                m.name.ends_with("_total"),
                "{}: _total iff counter",
                m.name
            );
            assert!(
                !m.name.contains("millis") && !m.name.contains("_ms"),
                "{}: base units",
                m.name
            );
            assert!(!m.help.is_empty());
        }
        assert!(LATENCY_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }

    fn repo_file(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
    }

    #[test]
    fn contract_names_are_documented() {
        let text = std::fs::read_to_string(repo_file("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let section = &text[text
            .find("## Metric contract")
            .expect("metric contract section")..];
        for m in all() {
            assert!(
                section.contains(&format!("`{}`", m.name)),
                "{} is not in ARCHITECTURE.md's metric contract",
                m.name
            );
        }
    }

    /// `contract/metric-contract.json` is what the Python tests read; regenerate it with
    /// `UPDATE_CONTRACT=1 cargo test -p contract`.
    #[test]
    fn metric_contract_json_is_current() {
        let path = repo_file("contract/metric-contract.json");
        let expected = serde_json::to_string_pretty(&contract_json()).unwrap() + "\n";
        if std::env::var_os("UPDATE_CONTRACT").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "{} is out of date: run `UPDATE_CONTRACT=1 cargo test -p contract`",
            path.display()
        );
    }

    #[test]
    fn kube_state_metric_names_are_external_names() {
        let (_, names) = EXTERNAL[0];
        for name in [
            kube_state_metrics::DEPLOYMENT_SPEC_REPLICAS,
            kube_state_metrics::DEPLOYMENT_STATUS_REPLICAS,
            kube_state_metrics::DEPLOYMENT_STATUS_REPLICAS_READY,
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }
}
