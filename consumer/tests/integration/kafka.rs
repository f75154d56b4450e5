//! Kafka mode on a real broker (testkit's Kafka 4.4, shared by these tests, each with its own topics and group) and
//! the real consumer binary: every message processed, reported and committed; metrics; readiness by assignment; two
//! members sharing partitions; SIGTERM finishing the message in hand; invalid messages skipped and counted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use contract::kafka::{Message, MessageMetadata, Processed, processed_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use testkit::Spawned;
use testkit::kafka::KafkaBroker;

const WAIT: Duration = Duration::from_secs(60);
const CALL: Duration = Duration::from_secs(10);

async fn broker() -> Arc<KafkaBroker> {
    tokio::task::spawn_blocking(KafkaBroker::shared)
        .await
        .expect("broker task")
        .expect("a Kafka broker starts")
}

/// Creates `name` with `partitions` partitions and its one-partition processed topic; returns the topic.
async fn topics(broker: &KafkaBroker, name: &str, partitions: i32) -> String {
    broker.create_topic(name, partitions).await.expect("topic");
    broker
        .create_topic(&processed_topic(name), 1)
        .await
        .expect("processed topic");
    name.to_owned()
}

/// Produces load messages `sequences` (keyed by sequence, so they spread over the partitions), acks awaited.
async fn produce(bootstrap: &str, topic: &str, sequences: std::ops::Range<u64>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer");
    let mut acks = Vec::new();
    for sequence in sequences {
        let message = Message {
            id: format!("test-{sequence}"),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            sequence,
            payload: "x".repeat(32),
            metadata: MessageMetadata {
                producer: "test".into(),
                test_run: topic.into(),
            },
        };
        let payload = serde_json::to_vec(&message).expect("json");
        let key = sequence.to_string();
        acks.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
                .map_err(|(error, _)| error)
                .expect("enqueued"),
        );
    }
    for ack in acks {
        tokio::time::timeout(Duration::from_secs(20), ack)
            .await
            .expect("ack in time")
            .expect("producer alive")
            .map_err(|(error, _)| error)
            .expect("delivered");
    }
}

async fn start_consumer(
    bootstrap: &str,
    topic: &str,
    group: &str,
    pod: &str,
    work_ms: &str,
) -> Spawned {
    Spawned::start(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pod-name",
            pod,
            "--shutdown-grace",
            "20s",
            "--kafka-brokers",
            bootstrap,
            "--kafka-topic",
            topic,
            "--kafka-group",
            group,
            "--kafka-work",
            "io",
            "--kafka-work-ms",
            work_ms,
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts")
}

/// Reads the processed topic from the start until `done` holds for the reports read so far (bounded).
async fn processed(
    bootstrap: &str,
    topic: &str,
    done: impl Fn(&[Processed]) -> bool,
) -> Vec<Processed> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(&processed_topic(topic), 0, Offset::Beginning)
        .expect("partition");
    reader.assign(&partitions).expect("assign");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut reports = Vec::new();
    while !done(&reports) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "processed reports incomplete after {WAIT:?}: {} read",
            reports.len()
        );
        if let Ok(message) =
            tokio::time::timeout(left.min(Duration::from_secs(1)), reader.recv()).await
        {
            let message = message.expect("read the processed topic");
            reports.push(
                serde_json::from_slice(message.payload().expect("payload"))
                    .expect("a Processed report"),
            );
        }
    }
    reports
}

fn sequences(reports: &[Processed]) -> BTreeSet<u64> {
    reports.iter().map(|report| report.sequence).collect()
}

/// (committed offset, log-end offset) per partition of `topic` for `group` (-1 when nothing is committed).
async fn offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offsets client");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = client
            .committed_offsets(list, Timeout::After(CALL))
            .expect("committed offsets");
        (0..partitions)
            .map(|partition| {
                let offset = match committed
                    .find_partition(&topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => offset,
                    _ => -1,
                };
                let (_, end) = client
                    .fetch_watermarks(&topic, partition, CALL)
                    .expect("watermarks");
                (offset, end)
            })
            .collect()
    })
    .await
    .expect("offsets task")
}

/// Waits until the group's committed offsets reach the log end on every partition (bounded).
async fn wait_committed_to_end(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = offsets(bootstrap, group, topic, partitions).await;
        if now.iter().all(|(committed, end)| committed == end) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed offsets never reached the end: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the series starting with `series` (name and labels) in `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .parse()
        .expect("a number")
}

/// Waits until `/ready` says the group assigned this member `partitions(n)`; returns the body.
async fn wait_assigned(
    client: &reqwest::Client,
    base: &str,
    accept: impl Fn(u64) -> bool,
) -> serde_json::Value {
    testkit::poll_json(client, &format!("{base}/ready"), WAIT, |body| {
        body["kafka_partitions"].as_u64().is_some_and(&accept)
    })
    .await
    .expect("partitions assigned")
}

#[tokio::test]
async fn kafka_mode_processes_reports_and_commits_every_message_and_counts_it() {
    let _machine = crate::common::shared_machine().await;
    let broker = broker().await;
    let topic = topics(&broker, "k-every", 4).await;
    let mut consumer = start_consumer(broker.bootstrap(), &topic, "g-every", "every-0", "5").await;
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    wait_assigned(&client, &base, |n| n == 4).await;

    produce(broker.bootstrap(), &topic, 0..120).await;
    let reports = processed(broker.bootstrap(), &topic, |r| sequences(r).len() == 120).await;
    assert_eq!(sequences(&reports), (0..120).collect());
    assert!(
        reports
            .iter()
            .all(|r| r.consumer == "every-0" && r.test_run == topic)
    );
    wait_committed_to_end(broker.bootstrap(), "g-every", &topic, 4).await;

    assert!(
        metric(
            &client,
            &base,
            r#"consumer_kafka_messages_total{outcome="processed"}"#
        )
        .await
            >= 120.0
    );
    assert_eq!(
        metric(
            &client,
            &base,
            r#"consumer_kafka_messages_total{outcome="invalid"}"#
        )
        .await,
        0.0
    );
    assert!(
        metric(
            &client,
            &base,
            "consumer_kafka_end_to_end_latency_seconds_count"
        )
        .await
            >= 120.0
    );
    assert!(
        metric(
            &client,
            &base,
            "consumer_kafka_processing_duration_seconds_count"
        )
        .await
            >= 120.0
    );
    assert_eq!(
        metric(&client, &base, "consumer_kafka_assigned_partitions").await,
        4.0
    );
    assert!(metric(&client, &base, "consumer_kafka_rebalances_total").await >= 1.0);
    // The work went through the executor slots, like `/load/io`.
    assert!(
        metric(
            &client,
            &base,
            r#"consumer_jobs_total{kind="io",mode="sync",outcome="done"}"#
        )
        .await
            >= 120.0
    );

    consumer.signal(libc::SIGTERM);
    let status = consumer
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits in time");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn kafka_mode_is_not_ready_before_an_assignment() {
    let _machine = crate::common::shared_machine().await;
    // Nothing listens there: the group can never assign this member anything.
    let nowhere = format!("127.0.0.1:{}", testkit::free_port());
    let mut consumer = start_consumer(&nowhere, "k-nowhere", "g-nowhere", "nowhere-0", "5").await;
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let response = client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("ready");
        assert_eq!(response.status(), 503);
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("waiting for a partition assignment")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    consumer.signal(libc::SIGTERM);
    let status = consumer
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits in time");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn two_consumers_in_one_group_share_the_partitions() {
    let _machine = crate::common::shared_machine().await;
    let broker = broker().await;
    let topic = topics(&broker, "k-share", 4).await;
    let mut first = start_consumer(broker.bootstrap(), &topic, "g-share", "share-a", "5").await;
    let client = reqwest::Client::new();
    let (base_a, rebalances) = (first.url("http"), "consumer_kafka_rebalances_total");
    wait_assigned(&client, &base_a, |n| n == 4).await;
    let mut second = start_consumer(broker.bootstrap(), &topic, "g-share", "share-b", "5").await;
    let base_b = second.url("http");
    let b = wait_assigned(&client, &base_b, |n| n > 0).await;
    let a = wait_assigned(&client, &base_a, |n| n > 0 && n < 4).await;
    assert_eq!(
        a["kafka_partitions"].as_u64().unwrap() + b["kafka_partitions"].as_u64().unwrap(),
        4,
        "{a} {b}"
    );
    assert!(
        metric(&client, &base_a, rebalances).await >= 2.0,
        "the first member saw the rebalance"
    );

    produce(broker.bootstrap(), &topic, 0..200).await;
    let reports = processed(broker.bootstrap(), &topic, |r| sequences(r).len() == 200).await;
    let by_consumer = reports
        .iter()
        .fold(HashMap::<&str, usize>::new(), |mut counts, r| {
            *counts.entry(r.consumer.as_str()).or_default() += 1;
            counts
        });
    assert!(
        by_consumer.get("share-a").is_some_and(|&n| n > 0),
        "{by_consumer:?}"
    );
    assert!(
        by_consumer.get("share-b").is_some_and(|&n| n > 0),
        "{by_consumer:?}"
    );
    wait_committed_to_end(broker.bootstrap(), "g-share", &topic, 4).await;

    for consumer in [&mut first, &mut second] {
        consumer.signal(libc::SIGTERM);
        let status = consumer
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("exits in time");
        assert_eq!(status.code(), Some(0));
    }
}

#[tokio::test]
async fn sigterm_while_messages_flow_commits_the_message_in_hand_and_leaves_no_gap() {
    let _machine = crate::common::shared_machine().await;
    let broker = broker().await;
    let topic = topics(&broker, "k-sigterm", 4).await;
    let mut first =
        start_consumer(broker.bootstrap(), &topic, "g-sigterm", "sigterm-a", "100").await;
    let client = reqwest::Client::new();
    wait_assigned(&client, &first.url("http"), |n| n == 4).await;
    produce(broker.bootstrap(), &topic, 0..100).await;
    // 100 ms per message on 4 partitions: about 40/s, so the signal lands mid-stream.
    processed(broker.bootstrap(), &topic, |r| r.len() >= 8).await;
    first.signal(libc::SIGTERM);
    let status = first
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits within the grace");
    assert_eq!(status.code(), Some(0));

    // Every report the first member wrote was committed before it left: per partition, committed = last reported + 1.
    let written = offsets(broker.bootstrap(), "g-sigterm", &processed_topic(&topic), 1).await[0].1;
    let reports = processed(broker.bootstrap(), &topic, |r| r.len() as i64 >= written).await;
    assert!(
        reports.len() < 100,
        "the signal came after the stream: {}",
        reports.len()
    );
    let committed = offsets(broker.bootstrap(), "g-sigterm", &topic, 4).await;
    for (partition, (committed, _)) in committed.iter().enumerate() {
        let last = reports
            .iter()
            .filter(|r| r.partition == partition as i32)
            .map(|r| r.offset)
            .max();
        assert_eq!(
            *committed,
            last.map_or(-1, |offset| offset + 1),
            "partition {partition}: {committed:?}"
        );
    }

    // The group restarts and drains: no gap.
    let mut second =
        start_consumer(broker.bootstrap(), &topic, "g-sigterm", "sigterm-b", "5").await;
    let all = processed(broker.bootstrap(), &topic, |r| sequences(r).len() == 100).await;
    assert_eq!(sequences(&all), (0..100).collect());
    wait_committed_to_end(broker.bootstrap(), "g-sigterm", &topic, 4).await;
    second.signal(libc::SIGTERM);
    let status = second
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits in time");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn invalid_messages_are_skipped_counted_and_committed_past() {
    let _machine = crate::common::shared_machine().await;
    let broker = broker().await;
    let topic = topics(&broker, "k-invalid", 1).await;
    // `message N`: not JSON.
    broker
        .produce(&topic, 0, 3)
        .await
        .expect("invalid messages");
    produce(broker.bootstrap(), &topic, 0..2).await;
    let mut consumer =
        start_consumer(broker.bootstrap(), &topic, "g-invalid", "invalid-0", "5").await;
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    let reports = processed(broker.bootstrap(), &topic, |r| sequences(r).len() == 2).await;
    assert_eq!(sequences(&reports), (0..2).collect());
    wait_committed_to_end(broker.bootstrap(), "g-invalid", &topic, 1).await;
    assert_eq!(
        metric(
            &client,
            &base,
            r#"consumer_kafka_messages_total{outcome="invalid"}"#
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(
            &client,
            &base,
            r#"consumer_kafka_messages_total{outcome="processed"}"#
        )
        .await,
        2.0
    );
    consumer.signal(libc::SIGTERM);
    let status = consumer
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits in time");
    assert_eq!(status.code(), Some(0));
}
