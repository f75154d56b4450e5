//! `generator produce` and `generator verify` against a real Kafka broker (testkit's, KRaft on 127.0.0.1): a clean
//! run is acked on rate and verifies with nothing lost; a hand-made run with known gaps and repeats is reported
//! exactly; bad flags are usage errors.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use contract::kafka::{Message, MessageMetadata, Processed, processed_topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use testkit::kafka::KafkaBroker;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_generator");

async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("generator finished in time")
    .expect("generator ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn broker() -> Arc<KafkaBroker> {
    tokio::task::spawn_blocking(KafkaBroker::shared)
        .await
        .expect("broker task")
        .expect("a test broker starts")
}

/// The last line of stdout that is a JSON object with `key` (progress lines come before the report).
fn json_with(stdout: &str, key: &str) -> Value {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get(key).is_some())
        .unwrap_or_else(|| panic!("no JSON line with {key:?} in\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_is_acked_on_rate_and_verifies_with_nothing_lost() {
    let broker = broker().await;
    let topic = "gen-clean";
    broker.create_topic(topic, 3).await.expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = dir.path().join("produce.json");
    let (code, stdout, stderr) = run(&[
        "produce",
        "--brokers",
        broker.bootstrap(),
        "--topic",
        topic,
        "--rate",
        "1000",
        "--count",
        "2000",
        "--payload-bytes",
        "256",
        "--key-strategy",
        "sequence",
        "--test-run",
        "clean-run",
        "--producer",
        "p-clean",
        "--metrics-port",
        "0",
        "--metrics-host",
        "127.0.0.1",
        "--output",
        "json",
        "--threshold",
        "p99<10s",
        "--threshold",
        "errors<0.1%",
        "--report",
        report_path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report, json_with(&stdout, "kafka"));
    let k = &report["kafka"];
    assert_eq!(k["scheduled"], 2000);
    assert_eq!(k["sent"], 2000);
    assert_eq!(k["acked"], 2000, "{k}");
    assert_eq!(k["failed"], 0);
    let rate = k["records_per_sec"].as_f64().unwrap();
    assert!((950.0..=1050.0).contains(&rate), "rate {rate}");
    assert!(k["mb_per_sec"].as_f64().unwrap() > 0.0);
    let l = &k["ack_latency_ms"];
    let p = |q: &str| {
        l[q].as_f64()
            .unwrap_or_else(|| panic!("{q} missing in {l}"))
    };
    assert!(p("p50") > 0.0, "{l}");
    assert!(p("p50") <= p("p90") && p("p90") <= p("p95") && p("p95") <= p("p99"));
    assert!(p("p99") <= p("p99_9") && p("p99_9") <= p("max"), "{l}");
    let intervals = k["intervals"].as_array().unwrap();
    assert!(!intervals.is_empty());
    let sent: u64 = intervals.iter().map(|i| i["sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, 2000);
    assert_eq!(report["test_run"], "clean-run");
    assert_eq!(report["thresholds"].as_array().unwrap().len(), 2);
    assert!(stdout.contains("\"kind\":\"kafka_progress\""), "{stdout}");

    let (code, stdout, stderr) = run(&[
        "verify",
        "--brokers",
        broker.bootstrap(),
        "--topic",
        topic,
        "--test-run",
        "clean-run",
        "--timeout",
        "30s",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = json_with(&stdout, "delivered");
    let d = &v["delivered"];
    assert_eq!(d["complete"], true);
    assert_eq!(d["lost"], 0);
    assert_eq!(d["duplicates"], 0);
    assert_eq!(d["producers"].as_array().unwrap().len(), 1);
    assert_eq!(d["producers"][0]["producer"], "p-clean");
    assert_eq!(d["producers"][0]["received"], 2000);
    assert_eq!(d["producers"][0]["expected"], 2000);
}

fn message(run: &str, producer: &str, sequence: u64) -> String {
    serde_json::to_string(&Message {
        id: format!("{producer}-{sequence}"),
        timestamp: "2026-01-11T12:34:56.000Z".into(),
        sequence,
        payload: "x".into(),
        metadata: MessageMetadata {
            producer: producer.into(),
            test_run: run.into(),
        },
    })
    .unwrap()
}

fn processed(run: &str, producer: &str, sequence: u64) -> String {
    serde_json::to_string(&Processed {
        id: format!("{producer}-{sequence}"),
        producer: producer.into(),
        test_run: run.into(),
        sequence,
        consumer: "consumer-0".into(),
        processed_at: "2026-01-11T12:34:57.000Z".into(),
        partition: 0,
        offset: sequence as i64,
    })
    .unwrap()
}

async fn produce_records(bootstrap: &str, topic: &str, records: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer");
    for (i, r) in records.iter().enumerate() {
        let key = i.to_string();
        tokio::time::timeout(
            Duration::from_secs(20),
            producer.send(
                FutureRecord::to(topic).key(&key).payload(r),
                Duration::from_secs(5),
            ),
        )
        .await
        .expect("delivery in time")
        .map_err(|(e, _)| e)
        .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_the_exact_gaps_and_duplicates_per_producer() {
    let broker = broker().await;
    let topic = "gen-gaps";
    broker.create_topic(topic, 2).await.expect("topic");
    broker
        .create_topic(&processed_topic(topic), 1)
        .await
        .expect("processed topic");
    let run_id = "gaps-run";
    let mut records: Vec<String> = [0, 1, 2, 4, 5, 5, 8, 9]
        .iter()
        .map(|s| message(run_id, "p-a", *s))
        .collect();
    records.extend(
        [0, 0, 1, 2, 3, 3, 3]
            .iter()
            .map(|s| message(run_id, "p-b", *s)),
    );
    // Another run's message fills p-a's gap at 3 there, not here; a foreign record is skipped.
    records.push(message("other-run", "p-a", 3));
    records.push("not json".to_string());
    produce_records(broker.bootstrap(), topic, &records).await;
    let done: Vec<String> = (0..4).map(|s| processed(run_id, "p-b", s)).collect();
    produce_records(broker.bootstrap(), &processed_topic(topic), &done).await;

    let args = [
        "verify",
        "--brokers",
        broker.bootstrap(),
        "--topic",
        topic,
        "--test-run",
        run_id,
        // p-a is never processed: verify waits for it until the timeout.
        "--timeout",
        "6s",
        "--processed",
    ];
    let (code, stdout, stderr) = run(&[&args[..], &["--output", "json"]].concat()).await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = json_with(&stdout, "delivered");
    let d = &v["delivered"];
    assert_eq!(d["complete"], true);
    assert_eq!(d["records_read"], 17);
    assert_eq!(d["skipped"], 2);
    assert_eq!(d["lost"], 3);
    assert_eq!(d["duplicates"], 4);
    let a = &d["producers"][0];
    assert_eq!(a["producer"], "p-a");
    assert_eq!(
        (&a["received"], &a["expected"], &a["lost"], &a["duplicates"]),
        (&8.into(), &10.into(), &3.into(), &1.into())
    );
    assert_eq!(a["lost_ranges"], serde_json::json!([[3, 3], [6, 7]]));
    assert_eq!(a["duplicated"], serde_json::json!([5]));
    let b = &d["producers"][1];
    assert_eq!(b["producer"], "p-b");
    assert_eq!(
        (&b["received"], &b["expected"], &b["lost"], &b["duplicates"]),
        (&7.into(), &4.into(), &0.into(), &3.into())
    );
    assert_eq!(b["duplicated"], serde_json::json!([0, 3]));
    // What the workers processed, against what was delivered: p-b fully, p-a not at all, so its 7 delivered
    // sequences are lost there, waited for until the timeout.
    let p = &v["processed"];
    assert_eq!(p["topic"], processed_topic(topic));
    assert_eq!(p["lost"], 7);
    let pa = &p["producers"][0];
    assert_eq!(pa["producer"], "p-a");
    assert_eq!(
        (&pa["received"], &pa["expected"], &pa["lost"]),
        (&0.into(), &7.into(), &7.into())
    );
    assert_eq!(
        pa["lost_ranges"],
        serde_json::json!([[0, 2], [4, 5], [8, 9]])
    );
    assert_eq!(p["producers"][1]["producer"], "p-b");
    assert_eq!(p["producers"][1]["received"], 4);
    assert_eq!(p["producers"][1]["lost"], 0);
    let waited = p["waited_s"].as_f64().unwrap();
    assert!(waited > 3.0 && p["readings"].as_u64().unwrap() > 1, "{p}");
    assert!(
        v["verdict"].as_str().unwrap().contains("10 messages lost"),
        "{v}"
    );

    let (code, stdout, _) = run(&args).await;
    assert_eq!(code, 1);
    assert!(stdout.contains("lost sequences: 3, 6-7"), "{stdout}");
    assert!(stdout.contains("duplicated sequences: 0, 3"), "{stdout}");

    // A run nobody produced is a failure, not a clean pass.
    let (code, stdout, _) = run(&[
        "verify",
        "--brokers",
        broker.bootstrap(),
        "--topic",
        topic,
        "--test-run",
        "never-ran",
        "--timeout",
        "30s",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("no message of test run never-ran"),
        "{stdout}"
    );
}

/// Workers behind their lag when `verify --processed` starts (a Job run right after the producer): it waits for
/// them and passes once the last processed record is in, rather than calling the ones still in flight lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_waits_for_workers_that_are_still_processing() {
    let broker = broker().await;
    let topic = "gen-late-workers";
    broker.create_topic(topic, 2).await.expect("topic");
    broker
        .create_topic(&processed_topic(topic), 2)
        .await
        .expect("processed topic");
    let run_id = "late-run";
    let sent: Vec<String> = (0..20).map(|s| message(run_id, "p-late", s)).collect();
    produce_records(broker.bootstrap(), topic, &sent).await;
    // Half processed now, out of order as partitions allow; the rest 2 s into verify's wait.
    let early: Vec<String> = (10..20).map(|s| processed(run_id, "p-late", s)).collect();
    produce_records(broker.bootstrap(), &processed_topic(topic), &early).await;
    let bootstrap = broker.bootstrap().to_string();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rest: Vec<String> = (0..10).map(|s| processed(run_id, "p-late", s)).collect();
        produce_records(&bootstrap, &processed_topic(topic), &rest).await;
    });
    let (code, stdout, stderr) = run(&[
        "verify",
        "--brokers",
        broker.bootstrap(),
        "--topic",
        topic,
        "--test-run",
        run_id,
        "--timeout",
        "60s",
        "--processed",
        "--output",
        "json",
    ])
    .await;
    late.await.expect("late processed records");
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let p = &json_with(&stdout, "processed")["processed"];
    assert_eq!(
        (&p["lost"], &p["producers"][0]["received"]),
        (&0.into(), &20.into()),
        "{p}"
    );
    let waited = p["waited_s"].as_f64().unwrap();
    assert!((1.5..50.0).contains(&waited), "waited {waited} s: {p}");
    assert!(p["readings"].as_u64().unwrap() >= 2, "{p}");
}

#[tokio::test]
async fn bad_produce_flags_are_usage_errors_naming_flag_value_and_allowed_values() {
    let base = ["produce", "--brokers", "127.0.0.1:9", "--topic", "t"];
    for (extra, needles) in [
        (
            vec!["--acks", "2", "--rate", "1", "--count", "1"],
            vec!["--acks", "'2'", "0, 1, all"],
        ),
        (
            vec!["--compression", "brotli", "--rate", "1", "--count", "1"],
            vec!["--compression", "'brotli'", "none, gzip, snappy, lz4, zstd"],
        ),
        (
            vec!["--key-strategy", "hash", "--rate", "1", "--count", "1"],
            vec!["--key-strategy", "'hash'", "none, sequence, random"],
        ),
        (
            vec!["--payload-bytes", "1048577", "--rate", "1", "--count", "1"],
            vec!["--payload-bytes", "1048577", "0..=1048576"],
        ),
        (
            vec!["--test", "kafka-huge", "--no-metrics"],
            vec!["--test", "kafka-huge", "kafka-light", "kafka-burst"],
        ),
        (
            vec!["--rate", "10", "--no-metrics"],
            vec!["--rate", "--count", "--duration"],
        ),
        (
            vec![
                "--rate",
                "10",
                "--count",
                "5",
                "--threshold",
                "time_to_scale<1s",
                "--no-metrics",
            ],
            vec!["time_to_scale", "p99", "errors", "rate"],
        ),
    ] {
        let args = [&base[..], &extra[..]].concat();
        let (code, _, stderr) = run(&args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
        }
    }
}
