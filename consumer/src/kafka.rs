//! Kafka mode (`--kafka-brokers`): the replica joins a consumer group and, per message, parses the load message
//! (`contract::kafka::Message`), does the configured work through the same executor slots as `/load/*`
//! ([`crate::work::submit`]), reports it to `<topic>.processed` (`contract::kafka::Processed`, the ack awaited) and only
//! then commits the offset: at-least-once. At most one message per partition is in hand (messages of a partition stay
//! in order); the executor slots bound the work overall. The drain stops fetching, finishes the messages in hand and
//! leaves the group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use contract::kafka::{Message, Processed, processed_topic};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::config::KafkaWork;
pub use crate::error::KafkaError;
use crate::metrics::{Metrics, label};
use crate::state::AppState;
pub use crate::state::Membership;
use crate::validate::Mode;
use crate::work::{self, Admitted, Work};

/// Longest wait for the broker's ack of a report.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before a failed message is tried again (it is never committed past unprocessed).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Work per CPU-burn iteration, the `/load/cpu` default.
const CPU_COMPLEXITY: u64 = 5;

/// Follows rebalances: an assignment (possibly empty: the group is stable and this member idle) makes the replica
/// ready and is counted.
struct GroupContext {
    metrics: Metrics,
    membership: Membership,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let count = partitions.count();
                self.metrics.kafka_rebalances_total.inc();
                self.metrics.kafka_assigned_partitions.set(count as i64);
                self.membership.set(count);
                tracing::info!(partitions = count, "kafka partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                self.metrics.kafka_assigned_partitions.set(0);
                tracing::info!(partitions = partitions.count(), "kafka partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "kafka rebalance failed"),
        }
    }
}

/// The group member and its report producer.
pub struct Worker {
    state: AppState,
    topic: String,
    processed_topic: String,
    consumer: StreamConsumer<GroupContext>,
    producer: FutureProducer,
}

impl Worker {
    /// Creates the clients and subscribes (the group is joined on the first fetch); `None` outside Kafka mode.
    pub fn connect(state: &AppState) -> Result<Option<Arc<Worker>>, KafkaError> {
        let (Some(brokers), Some(topic), Some(membership)) = (
            state.config.kafka_brokers.as_deref(),
            state.config.kafka_topic.as_deref(),
            state.kafka.clone(),
        ) else {
            return Ok(None);
        };
        let context = GroupContext {
            metrics: state.metrics.clone(),
            membership,
        };
        let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &state.config.kafka_group)
            .set("client.id", &state.pod_name)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                state.config.kafka_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (state.config.kafka_session_timeout_ms / 3).to_string(),
            )
            .set("allow.auto.create.topics", "false")
            .create_with_context(context)
            .map_err(|e| KafkaError(format!("cannot create a consumer for {brokers}: {e}")))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| KafkaError(format!("cannot subscribe to {topic}: {e}")))?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", &state.pod_name)
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                PRODUCE_TIMEOUT.as_millis().to_string(),
            )
            .create()
            .map_err(|e| KafkaError(format!("cannot create a producer for {brokers}: {e}")))?;
        tracing::info!(
            brokers,
            topic,
            group = %state.config.kafka_group,
            work = ?state.config.kafka_work,
            "kafka mode: joining the consumer group"
        );
        Ok(Some(Arc::new(Worker {
            state: state.clone(),
            topic: topic.to_owned(),
            processed_topic: processed_topic(topic),
            consumer,
            producer,
        })))
    }

    /// Fetches until the drain starts, then finishes the messages in hand and leaves the group.
    pub async fn run(self: Arc<Worker>) {
        let mut in_hand: HashMap<i32, JoinHandle<()>> = HashMap::new();
        loop {
            let received = tokio::select! {
                biased;
                _ = self.state.drain_started.cancelled() => break,
                received = self.consumer.recv() => received.map(|message| message.detach()),
            };
            let message = match received {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "kafka fetch failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // One message in hand per partition: the next waits for the previous one's commit.
            let partition = message.partition();
            if let Some(previous) = in_hand.remove(&partition) {
                let _ = previous.await;
            }
            let worker = self.clone();
            in_hand.insert(
                partition,
                tokio::spawn(async move { worker.handle(message).await }),
            );
            in_hand.retain(|_, task| !task.is_finished());
        }
        tracing::info!(
            in_hand = in_hand.len(),
            "kafka: stopped fetching; finishing the messages in hand"
        );
        for (_, task) in in_hand.drain() {
            let _ = task.await;
        }
        // Closing the consumer (on drop) leaves the group, so its partitions move at once; it blocks, so off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            self.consumer.unsubscribe();
            drop(self);
        })
        .await;
        tracing::info!("kafka: left the consumer group");
    }

    /// One message: processed and committed, skipped and committed (unparsable), or left uncommitted (drain).
    async fn handle(self: Arc<Worker>, message: OwnedMessage) {
        let taken = Instant::now();
        let metrics = &self.state.metrics;
        let parsed = message
            .payload()
            .ok_or_else(|| "no payload".to_owned())
            .and_then(|payload| {
                serde_json::from_slice::<Message>(payload).map_err(|e| e.to_string())
            });
        let load = match parsed {
            Ok(load) => load,
            Err(reason) => {
                tracing::warn!(partition = message.partition(), offset = message.offset(), %reason, "invalid kafka message skipped");
                metrics
                    .kafka_messages_total
                    .with_label_values(&[label::INVALID])
                    .inc();
                self.commit(&message).await;
                return;
            }
        };
        loop {
            match self.process(&load, &message).await {
                Ok(()) => break,
                Err(reason) => {
                    metrics
                        .kafka_messages_total
                        .with_label_values(&[label::KAFKA_FAILED])
                        .inc();
                    tracing::warn!(partition = message.partition(), offset = message.offset(), id = %load.id, %reason, "kafka message failed");
                    // Left uncommitted: the group's next owner of the partition gets it again.
                    if self.state.is_draining() {
                        return;
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        self.commit(&message).await;
        metrics
            .kafka_messages_total
            .with_label_values(&[label::PROCESSED])
            .inc();
        metrics
            .kafka_processing_duration_seconds
            .observe(taken.elapsed().as_secs_f64());
    }

    /// The work, then the report (ack awaited).
    async fn process(&self, load: &Message, message: &OwnedMessage) -> Result<(), String> {
        let state = &self.state;
        let config = &state.config;
        let duration = Duration::from_millis(config.kafka_work_ms);
        let work = match config.kafka_work {
            KafkaWork::Io => Work::Io { delay: duration },
            KafkaWork::Cpu => Work::Cpu {
                cpu_target: duration,
                complexity: CPU_COMPLEXITY,
            },
            KafkaWork::Memory => Work::Memory {
                reservation: state
                    .memory
                    .reserve(config.kafka_work_mb << 20)
                    .map_err(|over| {
                        format!(
                            "{} MiB would exceed the memory budget: {} of {} bytes are held",
                            config.kafka_work_mb, over.held, over.budget
                        )
                    })?,
                hold: duration,
            },
        };
        let request = serde_json::json!({"kafka_message": load.id});
        let finished = match work::submit(state, work, Mode::Sync, request).await {
            Ok(Admitted::Finished(finished)) => finished,
            Ok(Admitted::Queued(_)) => unreachable!("sync work is never queued"),
            Err(refusal) => return Err(refusal.to_string()),
        };
        if !finished.report.completed() {
            return Err("the work was cut short by the drain".into());
        }
        let done = SystemTime::now();
        if let Ok(sent) = humantime::parse_rfc3339_weak(&load.timestamp) {
            let latency = done.duration_since(sent).unwrap_or_default();
            state
                .metrics
                .kafka_end_to_end_latency_seconds
                .observe(latency.as_secs_f64());
        }
        let report = Processed {
            id: load.id.clone(),
            producer: load.metadata.producer.clone(),
            test_run: load.metadata.test_run.clone(),
            sequence: load.sequence,
            consumer: state.pod_name.clone(),
            processed_at: humantime::format_rfc3339_millis(done).to_string(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let payload = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
        self.producer
            .send(
                FutureRecord::to(&self.processed_topic)
                    .key(&load.metadata.producer)
                    .payload(&payload),
                Timeout::After(PRODUCE_TIMEOUT),
            )
            .await
            .map_err(|(error, _)| format!("report to {}: {error}", self.processed_topic))?;
        Ok(())
    }

    /// Commits past `message` (synchronously, on a blocking thread: the commit is done when this returns).
    async fn commit(self: &Arc<Worker>, message: &OwnedMessage) {
        let mut offsets = TopicPartitionList::new();
        if let Err(error) = offsets.add_partition_offset(
            &self.topic,
            message.partition(),
            Offset::Offset(message.offset() + 1),
        ) {
            tracing::warn!(%error, "kafka commit skipped");
            return;
        }
        let worker = self.clone();
        let committed =
            tokio::task::spawn_blocking(move || worker.consumer.commit(&offsets, CommitMode::Sync))
                .await;
        match committed {
            Ok(Ok(())) => {}
            // A rebalance took the partition: its next owner starts from the last commit (a repeat, never a gap).
            Ok(Err(error)) => {
                tracing::warn!(partition = message.partition(), offset = message.offset(), %error, "kafka commit failed")
            }
            Err(error) => tracing::warn!(%error, "kafka commit task failed"),
        }
    }
}
