//! The consumer group's lag sampled while faults run: the high watermarks minus the group's committed offsets, summed
//! over the topic's partitions (what KEDA's kafka scaler counts, before its partition cap), read without joining the
//! group. A sample the broker cannot answer (it is stopped) is `None`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Lag samples: when, and the group's total lag (`None`: not readable then).
pub(super) type LagSamples = Arc<Mutex<Vec<(Instant, Option<u64>)>>>;

/// Sample the group's lag on `topic` every `every` until `stop`, on a blocking thread (each broker call bounded by
/// `every`, so a stopped broker costs one missed sample, not a hang).
pub(super) fn sample_lag(
    brokers: &str,
    group: &str,
    topic: &str,
    every: Duration,
    stop: CancellationToken,
) -> (JoinHandle<()>, LagSamples) {
    let samples: LagSamples = Arc::default();
    let out = samples.clone();
    let (brokers, group, topic) = (brokers.to_string(), group.to_string(), topic.to_string());
    let task = tokio::task::spawn_blocking(move || {
        // Reads the group's committed offsets without joining it.
        let consumer: Option<BaseConsumer> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("client.id", "autoscaling-lab-lag")
            .create()
            .ok();
        let Some(consumer) = consumer else { return };
        let mut partitions: Vec<i32> = Vec::new();
        while !stop.is_cancelled() {
            let started = Instant::now();
            if partitions.is_empty() {
                partitions = consumer
                    .fetch_metadata(Some(&topic), every)
                    .map(|m| {
                        m.topics()
                            .iter()
                            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            let lag = (!partitions.is_empty())
                .then(|| lag_now(&consumer, &topic, &partitions, every))
                .flatten();
            out.lock().expect("lag samples").push((started, lag));
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
    });
    (task, samples)
}

fn lag_now(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    limit: Duration,
) -> Option<u64> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, limit).ok()?;
    let mut lag = 0u64;
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, limit).ok()?;
        let next = match committed.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        lag += u64::try_from(high - next.max(low)).unwrap_or(0);
    }
    Some(lag)
}
