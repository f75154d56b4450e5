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

use crate::stats::{Outcome, Shard};

/// Histogram buckets in seconds: the consumer's, so both sides' latencies compare bucket for bucket.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Hist {
    cumulative: [u64; 15],
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

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let st = self.state.lock().expect("metrics lock");
        let mut s = String::new();
        s.push_str("# HELP generator_requests_total Requests completed by the load generator.\n");
        s.push_str("# TYPE generator_requests_total counter\n");
        for ((ep, outcome), n) in &st.requests {
            let _ = writeln!(
                s,
                "generator_requests_total{{endpoint=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(ep)
            );
        }
        s.push_str(
            "# HELP generator_request_duration_seconds Request latency measured from the scheduled start.\n",
        );
        s.push_str("# TYPE generator_request_duration_seconds histogram\n");
        for (ep, h) in &st.durations {
            let ep = escape(ep);
            for (j, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "generator_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"{b}\"}} {}",
                    h.cumulative[j]
                );
            }
            let _ = writeln!(
                s,
                "generator_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                s,
                "generator_request_duration_seconds_sum{{endpoint=\"{ep}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "generator_request_duration_seconds_count{{endpoint=\"{ep}\"}} {}",
                h.count
            );
        }
        s.push_str("# HELP generator_target_rate Arrival rate this generator is asked for now, in requests per second.\n");
        s.push_str("# TYPE generator_target_rate gauge\n");
        let _ = writeln!(s, "generator_target_rate {}", st.target_rate);
        s.push_str("# HELP generator_dropped_total Requests that could not start on time (outstanding cap reached).\n");
        s.push_str("# TYPE generator_dropped_total counter\n");
        let _ = writeln!(s, "generator_dropped_total {}", st.dropped);
        s
    }
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
        .route("/metrics", get(metrics_handler))
        .route("/health", get(|| async { "ok" }))
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
        assert!(
            text.contains("generator_requests_total{endpoint=\"/load/io\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "generator_requests_total{endpoint=\"/load/io\",outcome=\"throttled\"} 1"
            )
        );
        assert!(text.contains(
            "generator_request_duration_seconds_bucket{endpoint=\"/load/io\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "generator_request_duration_seconds_bucket{endpoint=\"/load/io\",le=\"0.5\"} 2"
        ));
        assert!(text.contains("generator_target_rate 12.5"));
        assert!(text.contains("generator_dropped_total 2"));
    }
}
