//! The scaler's own Prometheus metrics (names fixed by the metric contract in ARCHITECTURE.md).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
];
const RPC_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// All scaler metrics, registered in their own registry (plus the process collector).
pub struct Metrics {
    pub registry: Registry,
    pub grpc_requests: IntCounterVec,
    pub grpc_duration: HistogramVec,
    pub metric_value: GaugeVec,
    pub metric_target: GaugeVec,
    pub metric_age: GaugeVec,
    pub active: IntGaugeVec,
    pub source_errors: IntCounterVec,
    pub source_polls: IntCounterVec,
    pub source_poll_duration: HistogramVec,
    pub streams_open: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "scaler_grpc_requests_total",
                "RPCs answered, by RPC and gRPC code name.",
            ),
            &["rpc", "code"],
        )
        .expect("valid metric");
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new("scaler_grpc_request_duration_seconds", "RPC handling time.")
                .buckets(RPC_BUCKETS.to_vec()),
            &["rpc"],
        )
        .expect("valid metric");
        let metric_value = GaugeVec::new(
            Opts::new("scaler_metric_value", "Last value read for the trigger."),
            &["scaled_object", "trigger"],
        )
        .expect("valid metric");
        let metric_target = GaugeVec::new(
            Opts::new("scaler_metric_target", "The trigger's target."),
            &["scaled_object", "trigger"],
        )
        .expect("valid metric");
        let metric_age = GaugeVec::new(
            Opts::new("scaler_metric_age_seconds", "Age of the cached value."),
            &["scaled_object", "trigger"],
        )
        .expect("valid metric");
        let active = IntGaugeVec::new(
            Opts::new(
                "scaler_active",
                "Whether any trigger of the ScaledObject is active.",
            ),
            &["scaled_object"],
        )
        .expect("valid metric");
        let source_errors = IntCounterVec::new(
            Opts::new("scaler_source_errors_total", "Failed polls per source."),
            &["source"],
        )
        .expect("valid metric");
        let source_polls = IntCounterVec::new(
            Opts::new("scaler_source_polls_total", "Polls made per source."),
            &["source"],
        )
        .expect("valid metric");
        let source_poll_duration = HistogramVec::new(
            HistogramOpts::new(
                "scaler_source_poll_duration_seconds",
                "Poll time per source.",
            )
            .buckets(BUCKETS.to_vec()),
            &["source"],
        )
        .expect("valid metric");
        let streams_open = IntGaugeVec::new(
            Opts::new(
                "scaler_streams_open",
                "Open StreamIsActive / StreamMetricSpec streams.",
            ),
            &["rpc"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(grpc_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(grpc_duration.clone()),
            Box::new(metric_value.clone()),
            Box::new(metric_target.clone()),
            Box::new(metric_age.clone()),
            Box::new(active.clone()),
            Box::new(source_errors.clone()),
            Box::new(source_polls.clone()),
            Box::new(source_poll_duration.clone()),
            Box::new(streams_open.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        for rpc in ["StreamIsActive", "StreamMetricSpec"] {
            streams_open.with_label_values(&[rpc]).set(0);
        }
        Metrics {
            registry,
            grpc_requests,
            grpc_duration,
            metric_value,
            metric_target,
            metric_age,
            active,
            source_errors,
            source_polls,
            source_poll_duration,
            streams_open,
        }
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
