//! The generator's own Prometheus endpoint (`GET /metrics` on `--metrics-port`): request counters, latency histogram,
//! target rate and drops, updated once per interval from the engine's HDR histograms (never on the hot path), so
//! several generator pods can be summed by Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use contract::metrics::generator::{
    DROPPED_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, TARGET_RATE,
};
use contract::metrics::{LATENCY_BUCKETS_SECONDS, MetricDef, MetricKind, labels};
use contract::routes;

use crate::model::Outcome;
use crate::stats::Shard;

/// Histogram buckets in seconds: the contract's, shared with the consumer, so both sides' latencies compare bucket
/// for bucket.
pub const BUCKETS: [f64; 15] = LATENCY_BUCKETS_SECONDS;

#[derive(Debug, Default, Clone)]
struct Hist {
    cumulative: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct State_ {
    requests: BTreeMap<(String, &'static str), u64>,
    durations: BTreeMap<String, Hist>,
    target_rate: f64,
    dropped: u64,
}

/// Metric values, shared by the engine (writer) and the HTTP endpoint (reader).
#[derive(Debug, Default)]
pub struct GeneratorMetrics {
    state: Mutex<State_>,
}

impl GeneratorMetrics {
    pub fn new() -> Arc<GeneratorMetrics> {
        Arc::new(GeneratorMetrics::default())
    }

    /// Add one interval's counts. `paths[i]` is the `endpoint` label of mix entry `i`.
    pub fn observe_interval(&self, paths: &[String], shard: &Shard, target_rate: f64) {
        let mut st = self.state.lock().expect("metrics lock");
        st.target_rate = target_rate;
        for (i, e) in shard.endpoints.iter().enumerate() {
            let path = paths.get(i).cloned().unwrap_or_else(|| "unknown".into());
            for o in Outcome::ALL {
                let n = e.count(o);
                *st.requests.entry((path.clone(), o.label())).or_default() += n;
            }
            st.dropped += e.dropped;
            let h = st.durations.entry(path).or_default();
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
        self.state.lock().expect("metrics lock").target_rate = rate;
    }

    /// Prometheus text exposition, names, types and help from the contract.
    pub fn render(&self) -> String {
        let st = self.state.lock().expect("metrics lock");
        let mut s = String::new();
        header(&mut s, &REQUESTS_TOTAL);
        for ((ep, outcome), n) in &st.requests {
            let _ = writeln!(
                s,
                "{}{{{}=\"{}\",{}=\"{outcome}\"}} {n}",
                REQUESTS_TOTAL.name,
                labels::ENDPOINT,
                escape(ep),
                labels::OUTCOME
            );
        }
        header(&mut s, &REQUEST_DURATION_SECONDS);
        let name = REQUEST_DURATION_SECONDS.name;
        let endpoint = labels::ENDPOINT;
        for (ep, h) in &st.durations {
            let ep = escape(ep);
            for (j, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{name}_bucket{{{endpoint}=\"{ep}\",{}=\"{b}\"}} {}",
                    labels::LE,
                    h.cumulative[j]
                );
            }
            let _ = writeln!(
                s,
                "{name}_bucket{{{endpoint}=\"{ep}\",{}=\"+Inf\"}} {}",
                labels::LE,
                h.count
            );
            let _ = writeln!(s, "{name}_sum{{{endpoint}=\"{ep}\"}} {}", h.sum);
            let _ = writeln!(s, "{name}_count{{{endpoint}=\"{ep}\"}} {}", h.count);
        }
        header(&mut s, &TARGET_RATE);
        let _ = writeln!(s, "{} {}", TARGET_RATE.name, st.target_rate);
        header(&mut s, &DROPPED_TOTAL);
        let _ = writeln!(s, "{} {}", DROPPED_TOTAL.name, st.dropped);
        s
    }
}

pub fn header(s: &mut String, def: &MetricDef) {
    let kind = match def.kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    };
    let _ = writeln!(s, "# HELP {} {}", def.name, def.help);
    let _ = writeln!(s, "# TYPE {} {kind}", def.name);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics_handler(State(m): State<Arc<GeneratorMetrics>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
}

/// Serve `/metrics` (and `/health`) on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<GeneratorMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(kind = "metrics", addr = %addr, "listening");
    }
    let app = Router::new()
        .route(routes::METRICS, get(metrics_handler))
        .route(routes::HEALTH, get(|| async { "ok" }))
        .with_state(metrics);
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
