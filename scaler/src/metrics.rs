//! The scaler's own Prometheus metrics, registered from their definitions in `contract::metrics::scaler` (name, help,
//! labels: written once for the scaler, the dashboards and the tests).

use contract::metrics::{LATENCY_BUCKETS_SECONDS, MetricDef, scaler as def};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// RPCs answer from a cache in microseconds: finer buckets than the contract's request latencies.
const RPC_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

fn opts(metric: &MetricDef) -> Opts {
    Opts::new(metric.name, metric.help)
}

fn histogram_opts(metric: &MetricDef, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(metric.name, metric.help).buckets(buckets.to_vec())
}

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
    pub kafka_partition_lag: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // The definitions are constants checked by contract's tests: a failure here is a programming error.
        let counter = |m: &MetricDef| IntCounterVec::new(opts(m), m.labels).expect("valid metric");
        let gauge = |m: &MetricDef| GaugeVec::new(opts(m), m.labels).expect("valid metric");
        let int_gauge = |m: &MetricDef| IntGaugeVec::new(opts(m), m.labels).expect("valid metric");
        let histogram = |m: &MetricDef, buckets: &[f64]| {
            HistogramVec::new(histogram_opts(m, buckets), m.labels).expect("valid metric")
        };
        let grpc_requests = counter(&def::GRPC_REQUESTS_TOTAL);
        let grpc_duration = histogram(&def::GRPC_REQUEST_DURATION_SECONDS, &RPC_BUCKETS);
        let metric_value = gauge(&def::METRIC_VALUE);
        let metric_target = gauge(&def::METRIC_TARGET);
        let metric_age = gauge(&def::METRIC_AGE_SECONDS);
        let active = int_gauge(&def::ACTIVE);
        let source_errors = counter(&def::SOURCE_ERRORS_TOTAL);
        let source_polls = counter(&def::SOURCE_POLLS_TOTAL);
        let source_poll_duration =
            histogram(&def::SOURCE_POLL_DURATION_SECONDS, &LATENCY_BUCKETS_SECONDS);
        let streams_open = int_gauge(&def::STREAMS_OPEN);
        let kafka_partition_lag = int_gauge(&def::KAFKA_PARTITION_LAG);
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
            Box::new(kafka_partition_lag.clone()),
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
            kafka_partition_lag,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_is_exported_with_its_help_and_type() {
        let metrics = Metrics::new();
        metrics
            .grpc_requests
            .with_label_values(&["GetMetrics", "OK"])
            .inc();
        metrics
            .grpc_duration
            .with_label_values(&["GetMetrics"])
            .observe(0.001);
        for vec in [
            &metrics.metric_value,
            &metrics.metric_target,
            &metrics.metric_age,
        ] {
            vec.with_label_values(&["lab/web", "t"]).set(1.0);
        }
        metrics.active.with_label_values(&["lab/web"]).set(1);
        metrics
            .kafka_partition_lag
            .with_label_values(&["lab/web", "t", "orders", "0"])
            .set(3);
        for source in [&metrics.source_errors, &metrics.source_polls] {
            source.with_label_values(&["direct:x"]).inc();
        }
        metrics
            .source_poll_duration
            .with_label_values(&["direct:x"])
            .observe(0.01);
        let text = metrics.render();
        for metric in def::ALL {
            let kind = format!("{:?}", metric.kind).to_lowercase();
            assert!(
                text.contains(&format!("# HELP {} {}\n", metric.name, metric.help)),
                "{} help",
                metric.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", metric.name)),
                "{} type",
                metric.name
            );
        }
    }
}
