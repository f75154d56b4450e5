//! The `kafka` trigger against a real Kafka broker (scripts/kafka/broker.sh via `testkit::kafka`): topics produced and
//! group offsets committed with known numbers in the test, then GetMetrics must give the exact lag KEDA's rules give,
//! the partition cap must apply, activation must follow the lag, `/explain` must show every partition and its rule, and
//! a stopped broker must give the cached value, then UNAVAILABLE. Two tests share one broker (distinct topics and
//! groups); the failure test stops its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::explain::ExplainKafka;
use keda_proto::ScaledObjectRef;
use keda_proto::external_scaler_client::ExternalScalerClient;
use testkit::kafka::KafkaBroker;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Scaler, eventually, meta, metrics_request, scaled_object};

async fn shared_broker() -> Arc<KafkaBroker> {
    tokio::task::spawn_blocking(KafkaBroker::shared)
        .await
        .expect("broker start not panicked")
        .expect("a Kafka broker starts (bash scripts/setup.sh fetches the jars)")
}

fn kafka_ref(name: &str, broker: &KafkaBroker, extra: &[(&str, &str)]) -> ScaledObjectRef {
    let mut pairs = vec![
        ("scalerAddress", "scaler:6000"),
        ("trigger", "kafka"),
        ("bootstrapServers", broker.bootstrap()),
    ];
    pairs.extend_from_slice(extra);
    scaled_object(name, meta(&pairs))
}

/// The metric name GetMetricSpec gives, and GetMetrics' value for it.
async fn metric(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> (String, f64) {
    let spec = client
        .get_metric_spec(reference.clone())
        .await
        .expect("GetMetricSpec")
        .into_inner();
    let name = spec.metric_specs[0].metric_name.clone();
    let value = client
        .get_metrics(metrics_request(reference, &name))
        .await
        .unwrap_or_else(|status| panic!("GetMetrics for {}: {status:?}", reference.name))
        .into_inner()
        .metric_values[0]
        .metric_value_float;
    (name, value)
}

async fn explained_kafka(scaler: &Scaler, name: &str) -> ExplainKafka {
    let explain = scaler.explained().await;
    let object = explain
        .scaled_object(&format!("lab/{name}"))
        .unwrap_or_else(|| panic!("{name} in /explain"));
    object.triggers[0]
        .kafka
        .clone()
        .unwrap_or_else(|| panic!("kafka section for {name}: {:?}", object.triggers[0]))
}

#[tokio::test]
async fn kafka_lag_is_exact_and_capped_at_the_partitions() {
    let broker = shared_broker().await;
    let topic = "lag-exact";
    broker.create_topic(topic, 4).await.unwrap();
    // Log-end offsets 30/20/10/5; the group committed 10/20/4 and nothing on partition 3.
    for (partition, count) in [(0, 30), (1, 20), (2, 10), (3, 5)] {
        assert_eq!(
            broker.produce(topic, partition, count).await.unwrap(),
            count as i64
        );
    }
    broker
        .commit("g-exact", topic, &[(0, 10), (1, 20), (2, 4)])
        .unwrap();

    let scaler = Scaler::start(&[
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--poll-interval",
        "300ms",
        "--source-timeout",
        "2s",
    ])
    .await;
    let mut client = scaler.client().await;
    let group = [("consumerGroup", "g-exact"), ("topic", topic)];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = group.to_vec();
        pairs.extend_from_slice(extra);
        pairs
    };
    // Lags 20/0/6 and 1 for the partition without a committed offset (latest: one consumer stays): 27.
    // (name, extra metadata, expected GetMetrics value)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);
    let cases: Vec<Case> = vec![
        // lagThreshold 5 x 4 partitions caps 27 at 20.
        ("capped", with(&[("lagThreshold", "5")]), 20.0),
        ("uncapped", with(&[("lagThreshold", "100")]), 27.0),
        (
            "idle",
            with(&[("lagThreshold", "5"), ("allowIdleConsumers", "true")]),
            27.0,
        ),
        // Partitions with lag: 0, 2 and 3 (its lag of 1) -> 3 x 5.
        (
            "with-lag",
            with(&[("lagThreshold", "5"), ("limitToPartitionsWithLag", "true")]),
            15.0,
        ),
        (
            "earliest",
            with(&[("lagThreshold", "100"), ("offsetResetPolicy", "earliest")]),
            31.0,
        ),
        (
            "to-zero",
            with(&[
                ("lagThreshold", "100"),
                ("scaleToZeroOnInvalidOffset", "true"),
            ]),
            26.0,
        ),
        (
            "limited",
            with(&[("lagThreshold", "100"), ("partitionLimitation", "0,2-2")]),
            26.0,
        ),
        // No topic: every topic the group has committed offsets for (only this one).
        (
            "all-topics",
            vec![("consumerGroup", "g-exact"), ("lagThreshold", "100")],
            27.0,
        ),
    ];
    for (name, extra, expected) in &cases {
        let reference = kafka_ref(name, &broker, extra);
        let (_, value) = metric(&mut client, &reference).await;
        assert_eq!(value, *expected, "{name}: {extra:?}");
    }

    let capped = explained_kafka(&scaler, "capped").await;
    assert_eq!(capped.consumer_group, "g-exact");
    assert_eq!(
        capped
            .partition_lags
            .iter()
            .map(|p| (p.partition, p.committed, p.log_end, p.lag, p.rule.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (0, Some(10), Some(30), 20, "log-end - committed"),
            (1, Some(20), Some(20), 0, "log-end - committed"),
            (2, Some(4), Some(10), 6, "log-end - committed"),
            (
                3,
                None,
                Some(5),
                1,
                "invalid offset, latest -> 1 (one consumer to commit a first offset)"
            ),
        ]
    );
    assert_eq!(
        (
            capped.total_lag,
            capped.partitions,
            capped.partitions_with_lag
        ),
        (27, 4, 3)
    );
    assert_eq!(
        (capped.cap_replicas, capped.cap_value, capped.cap_applied),
        (Some(4), Some(20), true)
    );
    let explain = scaler.explained().await;
    let trigger = &explain.scaled_object("lab/capped").unwrap().triggers[0];
    assert_eq!(
        (trigger.kind.as_str(), trigger.value, trigger.target),
        ("kafka", Some(20.0), 5.0)
    );
    assert_eq!(
        trigger.replicas_for_value,
        Some(4),
        "ceil(20 / 5): never more than the partitions"
    );
    assert!(
        trigger.source.starts_with("kafka:127.0.0.1:"),
        "{}",
        trigger.source
    );
    // The same per-partition figures on /metrics, for dashboards.
    let text = scaler.metrics_text().await;
    let partition_lag = |partition: &str| {
        text.lines()
            .find(|line| {
                line.starts_with("scaler_kafka_partition_lag{")
                    && line.contains("scaled_object=\"lab/capped\"")
                    && line.contains(&format!("partition=\"{partition}\""))
                    && line.contains("topic=\"lag-exact\"")
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(
        ["0", "1", "2", "3"].map(partition_lag),
        [Some(20.0), Some(0.0), Some(6.0), Some(1.0)],
        "{text}"
    );
    let earliest = explained_kafka(&scaler, "earliest").await;
    assert_eq!(
        earliest.partition_lags[3].rule,
        "invalid offset, earliest -> log-end"
    );
    let idle = explained_kafka(&scaler, "idle").await;
    assert_eq!((idle.cap_replicas, idle.cap_applied), (None, false));
    let limited = explained_kafka(&scaler, "limited").await;
    assert_eq!(
        limited
            .partition_lags
            .iter()
            .map(|p| p.partition)
            .collect::<Vec<_>>(),
        vec![0, 2]
    );

    // excludePersistentLag: nobody consumes, so from the second poll on every lagging partition is "stuck" and only the
    // invalid offset's 1 counts; activation still sees the whole lag.
    let persistent = kafka_ref(
        "persistent",
        &broker,
        &with(&[("lagThreshold", "100"), ("excludePersistentLag", "true")]),
    );
    let (name, _) = metric(&mut client, &persistent).await;
    eventually("persistent lag excluded", Duration::from_secs(10), || {
        let mut client = client.clone();
        let (persistent, name) = (persistent.clone(), name.clone());
        async move {
            let value = client
                .get_metrics(metrics_request(&persistent, &name))
                .await
                .map_err(|s| s.to_string())?
                .into_inner()
                .metric_values[0]
                .metric_value_float;
            if value == 1.0 {
                Ok(())
            } else {
                Err(format!("value {value}"))
            }
        }
    })
    .await;
    assert!(
        client
            .is_active(persistent.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let excluded = explained_kafka(&scaler, "persistent").await;
    assert_eq!(
        excluded
            .partition_lags
            .iter()
            .map(|p| (p.lag, p.lag_with_persistent))
            .collect::<Vec<_>>(),
        vec![(0, 20), (0, 0), (0, 6), (1, 1)]
    );
    assert!(
        excluded.partition_lags[0]
            .rule
            .starts_with("persistent lag excluded"),
        "{:?}",
        excluded.partition_lags[0]
    );
    assert_eq!(excluded.total_lag_with_persistent, 27);

    // A topic that does not exist: UNAVAILABLE naming it, never a made-up 0.
    let missing = kafka_ref(
        "missing",
        &broker,
        &[("consumerGroup", "g-exact"), ("topic", "no-such-topic")],
    );
    let spec = client
        .get_metric_spec(missing.clone())
        .await
        .unwrap()
        .into_inner();
    let status = client
        .get_metrics(metrics_request(&missing, &spec.metric_specs[0].metric_name))
        .await
        .expect_err("a missing topic has no lag");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("no-such-topic"),
        "{}",
        status.message()
    );

    // One Kafka source (one poller) serves every trigger on the same brokers, group and topic.
    let sources = scaler.explained().await.sources;
    let kafka_sources: Vec<_> = sources.iter().filter(|s| s.kind == "kafka").collect();
    assert_eq!(
        kafka_sources.len(),
        3,
        "one per group and topic: {kafka_sources:?}"
    );
    scaler.shutdown().await;
}

#[tokio::test]
async fn kafka_activation_follows_the_lag() {
    let broker = shared_broker().await;
    let topic = "lag-activation";
    broker.create_topic(topic, 2).await.unwrap();
    broker.produce(topic, 0, 10).await.unwrap();
    broker
        .commit("g-activation", topic, &[(0, 10), (1, 0)])
        .unwrap();
    let scaler = Scaler::start(&[
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--poll-interval",
        "300ms",
        "--deactivate-after-polls",
        "1",
    ])
    .await;
    let mut client = scaler.client().await;
    let reference = kafka_ref(
        "activation",
        &broker,
        &[
            ("consumerGroup", "g-activation"),
            ("topic", topic),
            ("activationLagThreshold", "3"),
        ],
    );
    let mut stream = client
        .stream_is_active(reference.clone())
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a state within 10 s")
            .expect("stream open")
            .expect("no error")
            .result
    };
    assert!(!next().await, "lag 0: inactive");
    // 3 is not above activationLagThreshold 3.
    broker.produce(topic, 1, 3).await.unwrap();
    let (name, value) = metric(&mut client, &reference).await;
    eventually("lag 3 seen", Duration::from_secs(5), || {
        let mut client = client.clone();
        let (reference, name) = (reference.clone(), name.clone());
        async move {
            let value = client
                .get_metrics(metrics_request(&reference, &name))
                .await
                .map_err(|s| s.to_string())?
                .into_inner()
                .metric_values[0]
                .metric_value_float;
            if value == 3.0 {
                Ok(())
            } else {
                Err(format!("value {value}"))
            }
        }
    })
    .await;
    assert!(value <= 3.0);
    assert!(
        !client
            .is_active(reference.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let pushed_at = Instant::now();
    broker.produce(topic, 0, 2).await.unwrap();
    assert!(next().await, "lag 5 > 3: active is pushed");
    assert!(
        pushed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        pushed_at.elapsed()
    );
    assert!(
        client
            .is_active(reference.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    broker
        .commit("g-activation", topic, &[(0, 12), (1, 3)])
        .unwrap();
    assert!(!next().await, "drained: inactive is pushed");
    scaler.shutdown().await;
}

#[tokio::test]
async fn kafka_broker_down_gives_the_cache_then_unavailable() {
    let broker = tokio::task::spawn_blocking(KafkaBroker::start)
        .await
        .unwrap()
        .expect("a Kafka broker starts");
    let topic = "lag-down";
    broker.create_topic(topic, 2).await.unwrap();
    broker.produce(topic, 0, 7).await.unwrap();
    broker.commit("g-down", topic, &[(0, 2)]).unwrap();
    let scaler = Scaler::start(&[
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--poll-interval",
        "300ms",
        "--source-timeout",
        "1s",
        "--max-staleness",
        "8s",
    ])
    .await;
    let mut client = scaler.client().await;
    // Partition 0: 7 - 2; partition 1: nothing committed, latest -> 1.
    let reference = kafka_ref(
        "down",
        &broker,
        &[("consumerGroup", "g-down"), ("topic", topic)],
    );
    let (name, value) = metric(&mut client, &reference).await;
    assert_eq!(value, 6.0);

    let stopping = Instant::now();
    tokio::task::spawn_blocking({
        let broker = Arc::new(broker);
        move || broker.stop()
    })
    .await
    .unwrap()
    .expect("the broker stops");
    // Within the staleness bound the cached value is served, never a made-up one.
    let cached = client.get_metrics(metrics_request(&reference, &name)).await;
    if stopping.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            cached.expect("cached value").into_inner().metric_values[0].metric_value_float,
            6.0
        );
    }
    let status = eventually(
        "UNAVAILABLE after the staleness bound",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            let (reference, name) = (reference.clone(), name.clone());
            async move {
                match client.get_metrics(metrics_request(&reference, &name)).await {
                    Err(status) => Ok(status),
                    Ok(ok) => Err(format!("still OK: {:?}", ok.into_inner())),
                }
            }
        },
    )
    .await;
    // The last good poll was at most one interval (300 ms) before the stop began, and the value lives 8 s.
    assert!(
        stopping.elapsed() >= Duration::from_secs(7),
        "UNAVAILABLE too early: {:?} after the stop began",
        stopping.elapsed()
    );
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("kafka:127.0.0.1:"),
        "{}",
        status.message()
    );
    assert_eq!(
        client
            .is_active(reference.clone())
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    let explain = scaler.explained().await;
    let trigger = &explain.scaled_object("lab/down").unwrap().triggers[0];
    assert!(trigger.stale && trigger.error.is_some(), "{trigger:?}");
    scaler.shutdown().await;
}
