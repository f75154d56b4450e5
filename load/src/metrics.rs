//! The generator's own Prometheus endpoint (`GET /metrics` on `--metrics-port`): request counters, latency histogram,
//! target rate and drops, updated once per interval from the engine's HDR histograms (never on the hot path), so
//! several generator pods can be summed by Prometheus. The exposition is the `prometheus` crate's, as in the consumer
//! and the scaler; [`serve`] and [`render`] are shared with the Kafka producer's metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder as _, Gauge, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use contract::metrics::generator::{
    DROPPED_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, TARGET_RATE,
};
use contract::metrics::{LATENCY_BUCKETS_SECONDS, MetricDef, labels};
use contract::routes;

use crate::model::Outcome;
use crate::stats::Shard;

/// Histogram buckets in seconds: the contract's, shared with the consumer, so both sides' latencies compare bucket
/// for bucket.
pub const BUCKETS: [f64; 15] = LATENCY_BUCKETS_SECONDS;

/// Options of a contract metric: its name and help, written once in `contract`.
pub fn opts(def: &MetricDef) -> Opts {
    Opts::new(def.name, def.help)
}

#[derive(Debug, Default, Clone)]
struct Hist {
    cumulative: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

/// The request-duration histograms per endpoint, filled from the engine's HDR histograms an interval at a time. A
/// collector of its own: the `prometheus` crate's histogram takes one observation at a time, and replaying every
/// request of an interval would cost what the HDR histograms save.
#[derive(Clone)]
struct Durations {
    desc: Desc,
    hists: Arc<Mutex<BTreeMap<String, Hist>>>,
}

impl Durations {
    fn new() -> Durations {
        let def = &REQUEST_DURATION_SECONDS;
        Durations {
            desc: Desc::new(
                def.name.into(),
                def.help.into(),
                vec![labels::ENDPOINT.into()],
                Default::default(),
            )
            .expect("the contract's name is valid"),
            hists: Arc::default(),
        }
    }
}

impl Collector for Durations {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let hists = self.hists.lock().expect("metrics lock");
        let mut family = MetricFamily {
            name: Some(REQUEST_DURATION_SECONDS.name.into()),
            help: Some(REQUEST_DURATION_SECONDS.help.into()),
            ..Default::default()
        };
        family.set_field_type(MetricType::HISTOGRAM);
        for (endpoint, h) in hists.iter() {
            let mut histogram = proto::Histogram {
                sample_count: Some(h.count),
                sample_sum: Some(h.sum),
                ..Default::default()
            };
            histogram.set_bucket(
                BUCKETS
                    .iter()
                    .zip(h.cumulative)
                    .map(|(bound, count)| proto::Bucket {
                        upper_bound: Some(*bound),
                        cumulative_count: Some(count),
                        ..Default::default()
                    })
                    .collect(),
            );
            let label = proto::LabelPair {
                name: Some(labels::ENDPOINT.into()),
                value: Some(endpoint.clone()),
                ..Default::default()
            };
            let mut metric = proto::Metric::from_label(vec![label]);
            metric.set_histogram(histogram);
            family.mut_metric().push(metric);
        }
        if family.get_metric().is_empty() {
            return Vec::new();
        }
        vec![family]
    }
}

/// Metric values, shared by the engine (writer) and the HTTP endpoint (reader).
pub struct GeneratorMetrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: Durations,
    target_rate: Gauge,
    dropped: IntCounter,
}

impl std::fmt::Debug for GeneratorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratorMetrics").finish_non_exhaustive()
    }
}

impl Default for GeneratorMetrics {
    fn default() -> GeneratorMetrics {
        let registry = Registry::new();
        let requests =
            IntCounterVec::new(opts(&REQUESTS_TOTAL), &[labels::ENDPOINT, labels::OUTCOME])
                .expect("valid metric");
        let durations = Durations::new();
        let target_rate = Gauge::with_opts(opts(&TARGET_RATE)).expect("valid metric");
        let dropped = IntCounter::with_opts(opts(&DROPPED_TOTAL)).expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(durations.clone()))
            .expect("registered once");
        registry
            .register(Box::new(target_rate.clone()))
            .expect("registered once");
        registry
            .register(Box::new(dropped.clone()))
            .expect("registered once");
        GeneratorMetrics {
            registry,
            requests,
            durations,
            target_rate,
            dropped,
        }
    }
}

impl GeneratorMetrics {
    pub fn new() -> Arc<GeneratorMetrics> {
        Arc::new(GeneratorMetrics::default())
    }

    /// Add one interval's counts. `paths[i]` is the `endpoint` label of mix entry `i`.
    pub fn observe_interval(&self, paths: &[String], shard: &Shard, target_rate: f64) {
        self.target_rate.set(target_rate);
        let mut hists = self.durations.hists.lock().expect("metrics lock");
        for (i, e) in shard.endpoints.iter().enumerate() {
            let path = paths.get(i).cloned().unwrap_or_else(|| "unknown".into());
            for o in Outcome::ALL {
                let n = e.count(o);
                // Every outcome is exposed from the first interval on, 0 included, as before.
                self.requests
                    .with_label_values(&[path.as_str(), o.label()])
                    .inc_by(n);
            }
            self.dropped.inc_by(e.dropped);
            let h = hists.entry(path).or_default();
            let len = e.latency.len();
            if len > 0 {
                for (j, b) in BUCKETS.iter().enumerate() {
                    let us = (b * 1_000_000.0) as u64;
                    h.cumulative[j] += e.latency.count_between(0, us);
                }
                h.count += len;
                h.sum += e.latency.mean() / 1_000_000.0 * len as f64;
            }
        }
    }

    pub fn set_target_rate(&self, rate: f64) {
        self.target_rate.set(rate);
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition, names, types and help from the contract.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// The text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .expect("the text encoding of valid metrics cannot fail");
    String::from_utf8(buffer).expect("the text exposition is UTF-8")
}

async fn metrics_handler(State(registry): State<Registry>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        render(&registry),
    )
}

/// Serve `/metrics` (and `/health`) for `registry` on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(kind = "metrics", addr = %addr, "listening");
    }
    let app = Router::new()
        .route(routes::METRICS, get(metrics_handler))
        .route(routes::HEALTH, get(|| async { "ok" }))
        .with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;
    use std::time::Duration;

    #[test]
    fn exposition_counts_intervals() {
        let m = GeneratorMetrics::default();
        let r = Recorder::new(1, 1);
        r.record(0, 0, Outcome::Ok, Duration::from_millis(3), Some(200), None);
        r.record(
            0,
            0,
            Outcome::Throttled,
            Duration::from_millis(300),
            Some(429),
            None,
        );
        r.record_dropped(0, 0, 2);
        m.observe_interval(&["/load/io".into()], &r.drain(), 12.5);
        let text = m.render();
        let (requests, duration) = (REQUESTS_TOTAL.name, REQUEST_DURATION_SECONDS.name);
        for line in [
            format!("{requests}{{endpoint=\"/load/io\",outcome=\"ok\"}} 1"),
            format!("{requests}{{endpoint=\"/load/io\",outcome=\"throttled\"}} 1"),
            format!("{duration}_bucket{{endpoint=\"/load/io\",le=\"0.005\"}} 1"),
            format!("{duration}_bucket{{endpoint=\"/load/io\",le=\"0.5\"}} 2"),
            format!("{} 12.5", TARGET_RATE.name),
            format!("{} 2", DROPPED_TOTAL.name),
            format!("# TYPE {duration} histogram"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
