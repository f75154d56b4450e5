//! `generator produce`: an open-model Kafka producer. Message `k` is due at the profile schedule's `time_of(k)`; it
//! is sent then (never held back by slow acks) and its ack latency runs from that scheduled time, so a stalled broker
//! or a client that cannot keep up shows in the figures instead of silently lowering the rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use contract::kafka::{Message, MessageMetadata};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

use super::args::{KeyStrategy, ProduceArgs};
use super::metrics::{self, KafkaMetrics};
use super::profiles;
use super::report::{self, KafkaInterval, KafkaSection, LatencyMs, ProduceReport, ProduceSettings};
use load::error::AppError;
use load::exit;
use load::output::OutputFormat;
use load::profile::Profile;
use load::profile::Schedule;

/// What this pod sends: the schedule (its share of the rate) and a cap on the count (its share of `--count`).
#[derive(Debug, Clone)]
pub struct ProducePlan {
    pub profile: Profile,
    pub cap: Option<u64>,
    pub test_run: String,
    pub producer: String,
}

/// A test run id nobody else has: time plus randomness.
pub fn fresh_test_run() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("run-{secs}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// This pod's share of `total` when `pods` split it: the first `total % pods` pods send one more.
pub fn share(total: u64, pods: u32, index: u32) -> u64 {
    let (pods, index) = (u64::from(pods), u64::from(index));
    total / pods + u64::from(index < total % pods)
}

impl ProducePlan {
    /// Checks the flags and builds the plan (usage errors name the flag).
    pub fn from_args(args: &ProduceArgs) -> Result<ProducePlan, AppError> {
        if args.idempotent && args.acks != super::args::Acks::All {
            return Err(AppError::usage(format!(
                "--idempotent needs --acks all (got --acks {})",
                args.acks.config_value()
            )));
        }
        if args.pod_index >= args.pods {
            return Err(AppError::usage(format!(
                "--pod-index {} must be below --pods {}",
                args.pod_index, args.pods
            )));
        }
        let mut profile = match (&args.test, args.rate) {
            (Some(name), _) => profiles::builtin(name).ok_or_else(|| {
                AppError::usage(format!(
                    "unknown Kafka profile {name:?} for --test; known: {}",
                    profiles::NAMES.join(", ")
                ))
            })?,
            (None, Some(rate)) => {
                let secs = match (args.count, args.duration) {
                    (_, Some(d)) => d.as_secs_f64(),
                    (Some(n), None) => n as f64 / rate,
                    (None, None) => {
                        return Err(AppError::usage(
                            "--rate needs --count N or --duration D (or use --test PROFILE)",
                        ));
                    }
                };
                let mut p = profiles::builtin("kafka-light").expect("builtin");
                p.name = format!("constant {rate}/s");
                p.description = String::new();
                p.stages[0].rate = rate;
                p.stages[0].duration = Duration::from_secs_f64(secs.max(0.001));
                p
            }
            (None, None) => {
                return Err(AppError::usage(format!(
                    "give --test PROFILE ({}) or --rate R with --count N or --duration D",
                    profiles::NAMES.join(", ")
                )));
            }
        };
        if args.test.is_some()
            && let Some(d) = args.duration
        {
            profile = profile.with_duration(d);
        }
        if args.pods > 1 {
            profile = profile.scale_rate(1.0 / f64::from(args.pods));
        }
        let cap = args.count.map(|n| share(n, args.pods, args.pod_index));
        let producer = match &args.producer {
            Some(name) if args.pods > 1 => format!("{name}-{}", args.pod_index),
            Some(name) => name.clone(),
            None if args.pods > 1 => format!("generator-{}", args.pod_index),
            None => std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .ok()
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| "generator".to_string()),
        };
        Ok(ProducePlan {
            profile,
            cap,
            test_run: args.test_run.clone().unwrap_or_else(fresh_test_run),
            producer,
        })
    }
}

/// librdkafka's statistics, for the retry count.
struct StatsContext {
    retries: Arc<AtomicU64>,
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        let retries = statistics.brokers.values().map(|b| b.txretries).sum();
        self.retries.store(retries, Ordering::Relaxed);
    }
}

/// The error class a failed message is counted under.
fn error_class(e: &KafkaError) -> String {
    match e {
        KafkaError::MessageProduction(code) => format!("{code:?}"),
        other => other.to_string(),
    }
}

#[derive(Debug)]
struct Counters {
    sent: u64,
    acked: u64,
    failed: u64,
    bytes_acked: u64,
    errors: BTreeMap<String, u64>,
    total: Histogram<u64>,
    interval: Histogram<u64>,
    interval_sent: u64,
    interval_acked: u64,
    interval_failed: u64,
    last_ack: Duration,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Counters {
    fn new() -> Counters {
        Counters {
            sent: 0,
            acked: 0,
            failed: 0,
            bytes_acked: 0,
            errors: BTreeMap::new(),
            total: histogram(),
            interval: histogram(),
            interval_sent: 0,
            interval_acked: 0,
            interval_failed: 0,
            last_ack: Duration::ZERO,
        }
    }

    fn fail(&mut self, class: String) {
        self.failed += 1;
        self.interval_failed += 1;
        *self.errors.entry(class).or_default() += 1;
    }
}

/// Everything the send loop, the ack tasks and the progress task share.
struct Shared {
    counters: Mutex<Counters>,
    outstanding: AtomicU64,
    metrics: Arc<KafkaMetrics>,
    start: Instant,
}

impl Shared {
    fn record_ack(&self, scheduled: Instant, result: Result<(), String>, bytes: usize) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(scheduled);
        let mut c = self.counters.lock().expect("counters lock");
        match result {
            Ok(()) => {
                let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
                c.acked += 1;
                c.interval_acked += 1;
                c.bytes_acked += bytes as u64;
                // Clamped into the histograms' bounds above: saturating here clips nothing.
                c.total.saturating_record(us);
                c.interval.saturating_record(us);
                self.metrics.acked(latency);
            }
            Err(class) => {
                c.fail(class);
                self.metrics.failed();
            }
        }
        c.last_ack = c.last_ack.max(now.duration_since(self.start));
    }

    /// Closes the current interval.
    fn interval(&self, target_rate: f64, length: Duration) -> KafkaInterval {
        let mut c = self.counters.lock().expect("counters lock");
        let l = LatencyMs::from_hist(&c.interval);
        let row = KafkaInterval {
            t_s: self.start.elapsed().as_secs_f64(),
            target_rate,
            sent: c.interval_sent,
            acked: c.interval_acked,
            failed: c.interval_failed,
            records_per_sec: c.interval_acked as f64 / length.as_secs_f64().max(1e-9),
            ack_p50_ms: l.p50,
            ack_p99_ms: l.p99,
            ack_max_ms: l.max,
        };
        c.interval.reset();
        c.interval_sent = 0;
        c.interval_acked = 0;
        c.interval_failed = 0;
        row
    }
}

fn producer_config(args: &ProduceArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("client.id", "autoscaling-lab-generator")
        // The Java client's key hashing, so keyed messages land where a Java producer would put them.
        .set("partitioner", "murmur2_random")
        .set("acks", args.acks.config_value())
        .set("compression.type", args.compression.config_value())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set(
            "message.timeout.ms",
            args.message_timeout.as_millis().max(1).to_string(),
        )
        .set("message.max.bytes", "2000000")
        // An open model sends on schedule whatever the acks do: the local queue must hold what is in flight.
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("statistics.interval.ms", "1000");
    if args.idempotent {
        config.set("enable.idempotence", "true");
    }
    config
}

fn print_progress(row: &KafkaInterval, output: OutputFormat) {
    match output {
        OutputFormat::Json => {
            let line = serde_json::json!({"kind": "kafka_progress", "interval": row});
            println!("{line}");
        }
        OutputFormat::Text => eprintln!(
            "[{:>6.1}s] target {:>8.1}/s  sent {:>7}  acked {:>7}  failed {:>5}  ack p50 {:>7.2}ms p99 {:>8.2}ms max {:>8.2}ms",
            row.t_s,
            row.target_rate,
            row.sent,
            row.acked,
            row.failed,
            row.ack_p50_ms,
            row.ack_p99_ms,
            row.ack_max_ms
        ),
    }
}

/// Runs `generator produce`; returns the exit code.
pub async fn produce_command(
    args: ProduceArgs,
    shutdown: CancellationToken,
) -> Result<i32, AppError> {
    let plan = ProducePlan::from_args(&args)?;
    let thresholds = report::parse_thresholds(&args.thresholds).map_err(AppError::usage)?;
    let retries = Arc::new(AtomicU64::new(0));
    let producer: FutureProducer<StatsContext> = producer_config(&args)
        .create_with_context(StatsContext {
            retries: retries.clone(),
        })
        .map_err(|e| AppError::usage(format!("--brokers {:?}: {e}", args.brokers)))?;
    eprintln!(
        "test run {} (producer {}): pass `--test-run {}` to `generator verify`",
        plan.test_run, plan.producer, plan.test_run
    );

    let metrics = KafkaMetrics::new();
    let stop_metrics = CancellationToken::new();
    let metrics_task = if args.no_metrics {
        None
    } else {
        let addr = format!("{}:{}", args.metrics_host, args.metrics_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| AppError::Runtime(format!("cannot bind /metrics on {addr}: {e}")))?;
        let stop = stop_metrics.clone();
        Some(tokio::spawn(metrics::serve(
            listener,
            metrics.registry().clone(),
            async move { stop.cancelled().await },
        )))
    };

    let schedule = Schedule::new(&plan.profile);
    // The schedule's count is a float sum of stages: 1000.0000001 means 1000 messages.
    let planned = (schedule.total_count() - 1e-6).ceil().max(0.0) as u64;
    let scheduled = plan.cap.map_or(planned, |cap| cap.min(planned));
    let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let wall_start = SystemTime::now();
    let shared = Arc::new(Shared {
        counters: Mutex::new(Counters::new()),
        outstanding: AtomicU64::new(0),
        metrics: metrics.clone(),
        start: Instant::now(),
    });

    // Progress: one interval row per --interval until the sending and the acks are done.
    let done = CancellationToken::new();
    let progress = {
        let (shared, done, schedule) = (shared.clone(), done.clone(), schedule.clone());
        let (every, output, quiet) = (
            args.interval.max(Duration::from_millis(100)),
            args.output,
            args.quiet,
        );
        tokio::spawn(async move {
            let mut rows = Vec::new();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                let finished = tokio::select! {
                    _ = tick.tick() => false,
                    _ = done.cancelled() => true,
                };
                let rate = schedule.rate_at(shared.start.elapsed().as_secs_f64());
                shared.metrics.set_target_rate(rate);
                let row = shared.interval(rate, every);
                if !quiet {
                    print_progress(&row, output);
                }
                rows.push(row);
                if finished {
                    return rows;
                }
            }
        })
    };

    let payload = "x".repeat(args.payload_bytes as usize);
    let mut interrupted = false;
    let mut k: u64 = 0;
    while k < scheduled {
        let Some(t) = schedule.time_of(k as f64) else {
            break;
        };
        let offset = Duration::from_secs_f64(t);
        let due = shared.start + offset;
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = shutdown.cancelled() => { interrupted = true; break; }
            }
        } else if shutdown.is_cancelled() {
            interrupted = true;
            break;
        }
        let message = Message {
            id: format!("{}-{k}", plan.producer),
            timestamp: humantime::format_rfc3339_millis(wall_start + offset).to_string(),
            sequence: k,
            payload: payload.clone(),
            metadata: MessageMetadata {
                producer: plan.producer.clone(),
                test_run: plan.test_run.clone(),
            },
        };
        let body = serde_json::to_vec(&message).expect("a message always serializes");
        let key = match args.key_strategy {
            KeyStrategy::None => None,
            KeyStrategy::Sequence => Some(k.to_string()),
            KeyStrategy::Random => Some(rand::random::<u64>().to_string()),
        };
        let bytes = body.len() + key.as_ref().map_or(0, String::len);
        let mut record = FutureRecord::<String, Vec<u8>>::to(&args.topic).payload(&body);
        if let Some(key) = &key {
            record = record.key(key);
        }
        {
            let mut c = shared.counters.lock().expect("counters lock");
            c.sent += 1;
            c.interval_sent += 1;
        }
        match producer.send_result(record) {
            Ok(delivery) => {
                shared.outstanding.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let result = match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(error_class(&e)),
                        Err(_) => Err("ProducerGone".to_string()),
                    };
                    shared.record_ack(due, result, bytes);
                    shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err((e, _)) => {
                shared.record_ack(due, Err(error_class(&e)), bytes);
            }
        }
        k += 1;
    }

    // Every message sent gets its ack or its timeout (message.timeout.ms); wait for them, bounded.
    let deadline = Instant::now() + args.message_timeout + Duration::from_secs(10);
    while shared.outstanding.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.cancel();
    let intervals = progress.await.unwrap_or_default();
    stop_metrics.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }

    let c = shared.counters.lock().expect("counters lock");
    let lost_in_flight = shared.outstanding.load(Ordering::SeqCst);
    let mut errors = c.errors.clone();
    let mut failed = c.failed;
    if lost_in_flight > 0 {
        *errors.entry("NoDeliveryReport".into()).or_default() += lost_in_flight;
        failed += lost_in_flight;
    }
    let elapsed = c.last_ack.max(Duration::from_millis(1)).as_secs_f64();
    let kafka = KafkaSection {
        scheduled,
        sent: c.sent,
        acked: c.acked,
        failed,
        records_per_sec: c.acked as f64 / elapsed,
        mb_per_sec: c.bytes_acked as f64 / 1e6 / elapsed,
        ack_latency_ms: LatencyMs::from_hist(&c.total),
        errors,
        retries: retries.load(Ordering::Relaxed),
        intervals,
    };
    drop(c);
    let results: Vec<_> = thresholds
        .iter()
        .map(|t| report::evaluate(t, &kafka))
        .collect();
    let breached = results.iter().filter(|r| !r.passed).count();
    let exit_code = if interrupted {
        exit::INTERRUPTED
    } else if breached > 0 {
        exit::THRESHOLDS_BREACHED
    } else {
        exit::OK
    };
    let verdict = format!(
        "{}: {} of {} messages acked, {} failed; {} of {} thresholds held",
        contract::exit::describe(exit_code).to_uppercase(),
        kafka.acked,
        kafka.scheduled,
        kafka.failed,
        results.len() - breached,
        results.len()
    );
    let report = ProduceReport {
        schema: load::report::REPORT_SCHEMA.to_string(),
        command: "produce".into(),
        profile: plan.profile.name.clone(),
        test_run: plan.test_run.clone(),
        producer: plan.producer.clone(),
        started_at,
        duration_s: elapsed,
        settings: ProduceSettings {
            brokers: args.brokers.clone(),
            topic: args.topic.clone(),
            payload_bytes: args.payload_bytes,
            key_strategy: format!("{:?}", args.key_strategy).to_lowercase(),
            acks: args.acks.config_value().into(),
            compression: args.compression.config_value().into(),
            linger_ms: args.linger_ms,
            batch_bytes: args.batch_bytes,
            pods: args.pods,
            pod_index: args.pod_index,
        },
        kafka,
        thresholds: results,
        interrupted,
        exit_code,
        verdict,
    };
    let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
    if let Some(path) = &args.report {
        std::fs::write(path, &json).map_err(|e| {
            AppError::Runtime(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&report).expect("serializes")),
        OutputFormat::Text => print!("{}", report::text_summary(&report)),
    }
    Ok(exit_code)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProduceArgs,
    }

    #[test]
    fn idempotence_needs_acks_all() {
        let plan = |extra: &[&str]| {
            let mut argv = vec![
                "produce",
                "--brokers",
                "127.0.0.1:1",
                "--topic",
                "t",
                "--rate",
                "10",
            ];
            argv.extend_from_slice(&["--count", "5"]);
            argv.extend_from_slice(extra);
            ProducePlan::from_args(&Cli::try_parse_from(argv).unwrap().args)
        };
        assert!(plan(&["--idempotent"]).is_ok());
        let e = plan(&["--idempotent", "--acks", "1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--idempotent needs --acks all"), "{e}");
        let config = producer_config(
            &Cli::try_parse_from(["p", "--brokers", "b", "--topic", "t", "--idempotent"])
                .unwrap()
                .args,
        );
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, pods) in [(1000, 3), (10, 4), (2, 5), (1_000_000, 7)] {
            let sum: u64 = (0..pods).map(|i| share(total, pods, i)).sum();
            assert_eq!(sum, total, "{total} over {pods}");
        }
        assert_eq!(share(10, 4, 0), 3);
        assert_eq!(share(10, 4, 3), 2);
    }
}
