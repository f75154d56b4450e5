//! `generator produce`'s Prometheus metrics (names from the contract): messages by outcome, the ack-latency
//! histogram (same buckets as the HTTP latency) and the target rate, updated on each ack. Exposed by the load core's
//! one `/metrics` server ([`load::metrics::serve`]).

use std::sync::Arc;
use std::time::Duration;

use contract::metrics::generator::{
    KAFKA_ACK_DURATION_SECONDS, KAFKA_MESSAGES_TOTAL, KAFKA_TARGET_RATE,
};
use contract::metrics::{LATENCY_BUCKETS_SECONDS, labels};
use load::metrics::opts;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, Registry};

pub use load::metrics::serve;

/// The producer's metric values, shared by the send loop (writer) and `/metrics` (reader).
pub struct KafkaMetrics {
    registry: Registry,
    messages: IntCounterVec,
    ack_duration: Histogram,
    target_rate: Gauge,
}

impl std::fmt::Debug for KafkaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMetrics").finish_non_exhaustive()
    }
}

impl Default for KafkaMetrics {
    fn default() -> KafkaMetrics {
        let registry = Registry::new();
        let messages = IntCounterVec::new(opts(&KAFKA_MESSAGES_TOTAL), &[labels::OUTCOME])
            .expect("valid metric");
        let ack_duration = Histogram::with_opts(
            HistogramOpts::new(
                KAFKA_ACK_DURATION_SECONDS.name,
                KAFKA_ACK_DURATION_SECONDS.help,
            )
            .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
        )
        .expect("valid metric");
        let target_rate = Gauge::with_opts(opts(&KAFKA_TARGET_RATE)).expect("valid metric");
        // Both outcomes from the start: a rate() over a series that appears late misses its first increase.
        for outcome in ["acked", "failed"] {
            messages.with_label_values(&[outcome]);
        }
        registry
            .register(Box::new(messages.clone()))
            .expect("registered once");
        registry
            .register(Box::new(ack_duration.clone()))
            .expect("registered once");
        registry
            .register(Box::new(target_rate.clone()))
            .expect("registered once");
        KafkaMetrics {
            registry,
            messages,
            ack_duration,
            target_rate,
        }
    }
}

impl KafkaMetrics {
    pub fn new() -> Arc<KafkaMetrics> {
        Arc::new(KafkaMetrics::default())
    }

    /// One acked message and its latency from the scheduled send time.
    pub fn acked(&self, latency: Duration) {
        self.messages.with_label_values(&["acked"]).inc();
        self.ack_duration.observe(latency.as_secs_f64());
    }

    pub fn failed(&self) {
        self.messages.with_label_values(&["failed"]).inc();
    }

    pub fn set_target_rate(&self, rate: f64) {
        self.target_rate.set(rate);
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        load::metrics::render(&self.registry)
    }
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
