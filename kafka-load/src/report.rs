//! The report of `generator produce`: the generator report's envelope (same `schema`, settings, thresholds, exit code,
//! verdict) with a `kafka` section in place of the HTTP figures, its thresholds, and the text summary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use load::report::ThresholdResult;
use load::threshold::{Metric, Threshold};

/// Ack latency percentiles in milliseconds, measured from each message's scheduled send time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    /// Percentiles of an HDR histogram recorded in microseconds (the load core's one helper).
    pub fn from_hist(h: &hdrhistogram::Histogram<u64>) -> LatencyMs {
        let l = load::stats::LatencySummary::from_histogram(h);
        LatencyMs {
            p50: l.p50_ms,
            p90: l.p90_ms,
            p95: l.p95_ms,
            p99: l.p99_ms,
            p99_9: l.p99_9_ms,
            max: l.max_ms,
            mean: l.mean_ms,
        }
    }
}

/// One progress interval's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaInterval {
    /// Seconds since the start, at the interval's end.
    pub t_s: f64,
    /// Send rate asked for at the interval's end (messages/s).
    pub target_rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// Acks per second over the interval.
    pub records_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
}

/// What Kafka made of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaSection {
    /// Messages the schedule asked this producer for.
    pub scheduled: u64,
    /// Handed to the client (the rest of `scheduled` was not reached: interrupted).
    pub sent: u64,
    /// Acknowledged by the broker.
    pub acked: u64,
    /// Rejected locally or by the broker, or timed out (`errors` has the classes).
    pub failed: u64,
    /// Acks per second over the run.
    pub records_per_sec: f64,
    /// Acked message bytes (key + value) per second, in MB (10^6 bytes).
    pub mb_per_sec: f64,
    pub ack_latency_ms: LatencyMs,
    /// Failed messages by error class (librdkafka's error code).
    pub errors: BTreeMap<String, u64>,
    /// Produce request retries (librdkafka's `txretries` over all brokers, sampled every second).
    pub retries: u64,
    pub intervals: Vec<KafkaInterval>,
}

/// The settings a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceSettings {
    pub brokers: String,
    pub topic: String,
    pub payload_bytes: u64,
    pub key_strategy: String,
    pub acks: String,
    pub compression: String,
    pub linger_ms: u64,
    pub batch_bytes: u64,
    pub pods: u32,
    pub pod_index: u32,
}

/// The `generator produce` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceReport {
    /// The generator report's schema id.
    pub schema: String,
    /// `produce`.
    pub command: String,
    pub profile: String,
    pub test_run: String,
    pub producer: String,
    /// RFC 3339.
    pub started_at: String,
    /// Start to last ack.
    pub duration_s: f64,
    pub settings: ProduceSettings,
    pub kafka: KafkaSection,
    pub thresholds: Vec<ThresholdResult>,
    pub interrupted: bool,
    pub exit_code: i32,
    pub verdict: String,
}

/// Parses `--threshold`s and keeps those that mean something for Kafka.
pub fn parse_thresholds(exprs: &[String]) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for e in exprs.iter().filter(|e| !e.trim().is_empty()) {
        let t = Threshold::parse(e).map_err(|e| e.to_string())?;
        let fits = matches!(
            t.metric,
            Metric::Latency(_) | Metric::Errors { .. } | Metric::Rate | Metric::Requests
        ) && t.endpoint.is_none();
        if !fits {
            return Err(format!(
                "threshold {e:?}: produce knows p50 p90 p95 p99 p99.9 max mean (ack latency), errors, rate \
                 (acks/s) and requests (acked), without an [endpoint] scope"
            ));
        }
        out.push(t);
    }
    Ok(out)
}

/// Judges one threshold on the Kafka figures.
pub fn evaluate(t: &Threshold, k: &KafkaSection) -> ThresholdResult {
    let l = &k.ack_latency_ms;
    let (actual, unit) = match &t.metric {
        Metric::Latency(name) => (
            match name.as_str() {
                "p50" | "median" => l.p50,
                "p90" => l.p90,
                "p95" => l.p95,
                "p99" => l.p99,
                "p99.9" | "p999" => l.p99_9,
                "max" => l.max,
                _ => l.mean,
            },
            "ms",
        ),
        Metric::Errors { percent: true } => (
            if k.sent == 0 {
                0.0
            } else {
                k.failed as f64 / k.sent as f64
            },
            "fraction",
        ),
        Metric::Errors { percent: false } => (k.failed as f64, "messages"),
        Metric::Rate => (k.records_per_sec, "msg/s"),
        _ => (k.acked as f64, "messages"),
    };
    let passed = t.op.holds(actual, t.value);
    ThresholdResult {
        expression: t.expr.clone(),
        actual: Some(actual),
        unit: unit.to_string(),
        passed,
        message: format!(
            "{} {}: actual {actual:.3} {unit} {} {} {:.3}",
            t.expr,
            if passed { "held" } else { "BREACHED" },
            if passed { "" } else { "vs" },
            t.op.text(),
            t.value
        ),
    }
}

/// The human summary printed after a run.
pub fn text_summary(r: &ProduceReport) -> String {
    let k = &r.kafka;
    let l = &k.ack_latency_ms;
    let mut s = format!(
        "produce {} to {} (test run {}, producer {})\n\
         messages  scheduled {} sent {} acked {} failed {} retries {}\n\
         throughput {:.1} msg/s {:.3} MB/s over {:.1}s\n\
         ack latency ms  p50 {:.2} p90 {:.2} p95 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}\n",
        r.profile,
        r.settings.topic,
        r.test_run,
        r.producer,
        k.scheduled,
        k.sent,
        k.acked,
        k.failed,
        k.retries,
        k.records_per_sec,
        k.mb_per_sec,
        r.duration_s,
        l.p50,
        l.p90,
        l.p95,
        l.p99,
        l.p99_9,
        l.max
    );
    for (class, n) in &k.errors {
        s.push_str(&format!("error     {class}: {n}\n"));
    }
    for t in &r.thresholds {
        s.push_str(&format!("threshold {}\n", t.message));
    }
    s.push_str(&format!("verdict   {}\n", r.verdict));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> KafkaSection {
        KafkaSection {
            scheduled: 100,
            sent: 100,
            acked: 99,
            failed: 1,
            records_per_sec: 99.0,
            mb_per_sec: 0.1,
            ack_latency_ms: LatencyMs {
                p99: 40.0,
                ..LatencyMs::default()
            },
            errors: BTreeMap::new(),
            retries: 0,
            intervals: Vec::new(),
        }
    }

    #[test]
    fn thresholds_judge_kafka_figures() {
        let ts = parse_thresholds(&["p99<50ms".into(), "errors<0.1%".into(), "rate>=95".into()])
            .unwrap();
        let results: Vec<bool> = ts.iter().map(|t| evaluate(t, &section()).passed).collect();
        assert_eq!(results, [true, false, true]);
        assert!(parse_thresholds(&["time_to_scale<60s".into()]).is_err());
        assert!(parse_thresholds(&["p99[x]<1s".into()]).is_err());
    }
}
