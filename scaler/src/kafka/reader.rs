//! Reads a consumer group's offsets the way KEDA's kafka scaler does, through librdkafka (`rdkafka`): a consumer that
//! carries the group's `group.id` but never subscribes, so it never joins the group nor causes a rebalance.
//! `committed_offsets` sends OffsetFetch for the group, `fetch_watermarks` gives each partition's high watermark, and
//! the metadata names the partitions. Every call is blocking and bounded by one deadline; run it in `spawn_blocking`.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::lag::PartitionOffsets;

/// One Kafka source's client: brokers, group, and the topic (None: every topic the group has offsets for).
pub struct LagReader {
    consumer: BaseConsumer,
    bootstrap_servers: String,
    group: String,
    topic: Option<String>,
}

/// One read: the offsets, and how many requests it took (for the source's statistics).
#[derive(Debug)]
pub struct Read {
    pub offsets: Vec<PartitionOffsets>,
    pub requests: u64,
}

impl LagReader {
    /// A client for `bootstrap_servers`; connects lazily (no I/O here).
    pub fn new(
        bootstrap_servers: &str,
        group: &str,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<LagReader, String> {
        let socket_timeout = timeout.as_millis().clamp(100, 300_000).to_string();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", group)
            .set("client.id", "autoscaling-lab-scaler")
            // Never subscribes, never commits: it only reads what the group committed.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .set("socket.timeout.ms", &socket_timeout)
            // Reconnect quickly after a broker restart, but without hammering a broker that is down.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .create()
            .map_err(|e| format!("cannot create a Kafka client for {bootstrap_servers}: {e}"))?;
        Ok(LagReader {
            consumer,
            bootstrap_servers: bootstrap_servers.to_string(),
            group: group.to_string(),
            topic: topic.map(str::to_string),
        })
    }

    /// The offsets of every partition that counts, within `timeout` in all (blocking).
    pub fn read(&self, timeout: Duration) -> Result<Read, String> {
        let deadline = Instant::now() + timeout;
        let remaining = |what: &str| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(format!(
                    "reading {what} from {} did not finish within {timeout:?}",
                    self.bootstrap_servers
                ))
            } else {
                Ok(left)
            }
        };
        let mut requests = 1;
        let metadata = self
            .consumer
            .fetch_metadata(self.topic.as_deref(), remaining("metadata")?)
            .map_err(|e| format!("metadata from {}: {e}", self.bootstrap_servers))?;
        let mut tpl = TopicPartitionList::new();
        for topic in metadata.topics() {
            // Without a topic, KEDA lists the group's topics; the internal ones never hold consumer data.
            if self.topic.is_none() && topic.name().starts_with("__") {
                continue;
            }
            if let Some(error) = topic.error() {
                return Err(format!(
                    "topic {}: {} (does the topic exist?)",
                    topic.name(),
                    rdkafka::error::RDKafkaErrorCode::from(error)
                ));
            }
            for partition in topic.partitions() {
                tpl.add_partition(topic.name(), partition.id());
            }
        }
        if let Some(topic) = &self.topic
            && tpl.count() == 0
        {
            return Err(format!("topic {topic} has no partitions in the metadata"));
        }
        requests += 1;
        let committed = self
            .consumer
            .committed_offsets(tpl, remaining("committed offsets")?)
            .map_err(|e| {
                format!(
                    "committed offsets of group {} from {}: {e}",
                    self.group, self.bootstrap_servers
                )
            })?;
        let mut offsets = Vec::new();
        for elem in committed.elements() {
            elem.error().map_err(|e| {
                format!(
                    "committed offset of group {} on {}/{}: {e}",
                    self.group,
                    elem.topic(),
                    elem.partition()
                )
            })?;
            let committed = match elem.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            offsets.push(PartitionOffsets {
                topic: elem.topic().to_string(),
                partition: elem.partition(),
                committed,
                log_end: None,
            });
        }
        if self.topic.is_none() {
            // KEDA's "all topics": those the group has committed offsets for (OffsetFetch with no topic list).
            let with_offsets: std::collections::HashSet<String> = offsets
                .iter()
                .filter(|o| o.committed.is_some())
                .map(|o| o.topic.clone())
                .collect();
            offsets.retain(|o| with_offsets.contains(&o.topic));
        }
        for o in &mut offsets {
            requests += 1;
            let (_low, high) = self
                .consumer
                .fetch_watermarks(&o.topic, o.partition, remaining("log-end offsets")?)
                .map_err(|e| {
                    format!(
                        "log-end offset of {}/{} from {}: {e}",
                        o.topic, o.partition, self.bootstrap_servers
                    )
                })?;
            o.log_end = Some(high);
        }
        Ok(Read { offsets, requests })
    }
}
