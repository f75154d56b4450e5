//! `generator produce`'s Prometheus metrics (names from the contract): messages by outcome, the ack-latency
//! histogram (same buckets as the HTTP latency) and the target rate, updated on each ack.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use contract::metrics::generator::{
    KAFKA_ACK_DURATION_SECONDS, KAFKA_MESSAGES_TOTAL, KAFKA_TARGET_RATE,
};
use contract::metrics::{LATENCY_BUCKETS_SECONDS, labels};
use contract::routes;

use load::metrics::header;

#[derive(Debug, Default)]
struct Values {
    acked: u64,
    failed: u64,
    cumulative: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
    target_rate: f64,
}

/// The producer's metric values, shared by the send loop (writer) and `/metrics` (reader).
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    values: Mutex<Values>,
}

impl KafkaMetrics {
    pub fn new() -> Arc<KafkaMetrics> {
        Arc::new(KafkaMetrics::default())
    }

    /// One acked message and its latency from the scheduled send time.
    pub fn acked(&self, latency: Duration) {
        let mut v = self.values.lock().expect("metrics lock");
        v.acked += 1;
        let secs = latency.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
            if secs <= *b {
                v.cumulative[i] += 1;
            }
        }
        v.count += 1;
        v.sum += secs;
    }

    pub fn failed(&self) {
        self.values.lock().expect("metrics lock").failed += 1;
    }

    pub fn set_target_rate(&self, rate: f64) {
        self.values.lock().expect("metrics lock").target_rate = rate;
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let v = self.values.lock().expect("metrics lock");
        let mut s = String::new();
        header(&mut s, &KAFKA_MESSAGES_TOTAL);
        for (outcome, n) in [("acked", v.acked), ("failed", v.failed)] {
            let _ = writeln!(
                s,
                "{}{{{}=\"{outcome}\"}} {n}",
                KAFKA_MESSAGES_TOTAL.name,
                labels::OUTCOME
            );
        }
        header(&mut s, &KAFKA_ACK_DURATION_SECONDS);
        let name = KAFKA_ACK_DURATION_SECONDS.name;
        for (i, b) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}_bucket{{{}=\"{b}\"}} {}",
                labels::LE,
                v.cumulative[i]
            );
        }
        let _ = writeln!(s, "{name}_bucket{{{}=\"+Inf\"}} {}", labels::LE, v.count);
        let _ = writeln!(s, "{name}_sum {}", v.sum);
        let _ = writeln!(s, "{name}_count {}", v.count);
        header(&mut s, &KAFKA_TARGET_RATE);
        let _ = writeln!(s, "{} {}", KAFKA_TARGET_RATE.name, v.target_rate);
        s
    }
}

async fn metrics_handler(State(m): State<Arc<KafkaMetrics>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
}

/// Serve `/metrics` (and `/health`) on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<KafkaMetrics>,
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

    #[test]
    fn exposition_counts_acks() {
        let m = KafkaMetrics::default();
        m.acked(Duration::from_millis(3));
        m.acked(Duration::from_millis(300));
        m.failed();
        m.set_target_rate(1000.0);
        let text = m.render();
        let d = KAFKA_ACK_DURATION_SECONDS.name;
        for line in [
            format!("{}{{outcome=\"acked\"}} 2", KAFKA_MESSAGES_TOTAL.name),
            format!("{}{{outcome=\"failed\"}} 1", KAFKA_MESSAGES_TOTAL.name),
            format!("{d}_bucket{{le=\"0.005\"}} 1"),
            format!("{d}_bucket{{le=\"0.5\"}} 2"),
            format!("{d}_count 2"),
            format!("{} 1000", KAFKA_TARGET_RATE.name),
            format!("# TYPE {d} histogram"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
