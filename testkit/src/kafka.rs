//! A real Apache Kafka broker for tests: `scripts/kafka/broker.sh` (KRaft, one node, 127.0.0.1 free ports, the
//! official jars; docs/kafka-broker.md) started into a temporary directory and stopped on drop, plus the few client
//! calls tests need to set up known offsets (create a topic, produce to a partition, commit a group's offsets) with
//! `rdkafka`. Every call is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Longest a broker may take to be fetched, formatted and ready (the script's own ready timeout is 60 s; a cold
/// `fetch` from Maven Central comes on top).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest `broker.sh stop` may take (its SIGTERM wait is 30 s, then SIGKILL).
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// Time limit of one client call against the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a broker fixture failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("broker.sh {action} failed: {detail}")]
    Script { action: String, detail: String },
    #[error("kafka client: {0}")]
    Client(String),
}

/// A broker running in its own temporary directory; stopped (never left running) when dropped.
pub struct KafkaBroker {
    dir: tempfile::TempDir,
    bootstrap: String,
    stopped: Mutex<bool>,
}

/// The broker tests of one binary share (see [`KafkaBroker::shared`]).
static SHARED: Mutex<Weak<KafkaBroker>> = Mutex::new(Weak::new());

fn script() -> PathBuf {
    crate::workspace_root().join("scripts/kafka/broker.sh")
}

/// Runs `broker.sh ARGS`, killing it if it outlives `timeout`; returns its stdout.
fn run_script(args: &[&str], timeout: Duration) -> Result<String, KafkaError> {
    let action = args.first().copied().unwrap_or_default().to_string();
    let failed = |detail: String| KafkaError::Script {
        action: action.clone(),
        detail,
    };
    let out = tempfile::NamedTempFile::new().map_err(|e| failed(e.to_string()))?;
    let err = tempfile::NamedTempFile::new().map_err(|e| failed(e.to_string()))?;
    let mut child = Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.reopen().map_err(|e| failed(e.to_string()))?)
        .stderr(err.reopen().map_err(|e| failed(e.to_string()))?)
        .spawn()
        .map_err(|e| failed(format!("cannot run bash: {e}")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| failed(e.to_string()))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("did not finish within {timeout:?}")));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
        Err(failed(format!("{status}; stderr:\n{stderr}")))
    }
}

impl KafkaBroker {
    /// Starts a fresh broker (blocking, about 10 s; fetches the jars first if `scripts/setup.sh` did not).
    pub fn start() -> Result<KafkaBroker, KafkaError> {
        let dir = tempfile::Builder::new()
            .prefix("kafka-test-")
            .tempdir()
            .map_err(|e| KafkaError::Script {
                action: "start".into(),
                detail: e.to_string(),
            })?;
        let dir_arg = dir.path().to_string_lossy().to_string();
        let stdout = match run_script(&["start", &dir_arg], START_TIMEOUT) {
            Ok(stdout) => stdout,
            Err(error) => {
                // A half-started JVM must not outlive the failure.
                let _ = run_script(&["stop", &dir_arg], STOP_TIMEOUT);
                return Err(error);
            }
        };
        let bootstrap = stdout
            .lines()
            .find_map(|line| line.strip_prefix("bootstrap="))
            .map(str::to_string)
            .ok_or_else(|| KafkaError::Script {
                action: "start".into(),
                detail: format!("no `bootstrap=` line in {stdout:?}"),
            })?;
        Ok(KafkaBroker {
            dir,
            bootstrap,
            stopped: Mutex::new(false),
        })
    }

    /// One broker for every caller that holds it at the same time (tests of one binary that run concurrently, each
    /// with its own topics and groups); it stops when the last holder drops it, so no JVM outlives the tests.
    pub fn shared() -> Result<Arc<KafkaBroker>, KafkaError> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(broker) = slot.upgrade() {
            return Ok(broker);
        }
        let broker = Arc::new(KafkaBroker::start()?);
        *slot = Arc::downgrade(&broker);
        Ok(broker)
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's directory (`server.log` is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker (SIGTERM, bounded wait, SIGKILL); later calls do nothing.
    pub fn stop(&self) -> Result<(), KafkaError> {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if *stopped {
            return Ok(());
        }
        run_script(&["stop", &self.dir.path().to_string_lossy()], STOP_TIMEOUT)?;
        *stopped = true;
        Ok(())
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.timeout.ms", "10000");
        config
    }

    /// Creates a topic with `partitions` partitions (replication factor 1).
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|e| KafkaError::Client(e.to_string()))?;
        let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        let results = tokio::time::timeout(
            CALL_TIMEOUT + Duration::from_secs(5),
            admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &options,
            ),
        )
        .await
        .map_err(|_| KafkaError::Client(format!("creating topic {topic} timed out")))?
        .map_err(|e| KafkaError::Client(e.to_string()))?;
        for result in results {
            result.map_err(|(name, code)| {
                KafkaError::Client(format!("create topic {name}: {code}"))
            })?;
        }
        Ok(())
    }

    /// Produces `count` small records to one partition (acks=all) and returns the partition's last offset + 1.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        count: usize,
    ) -> Result<i64, KafkaError> {
        let producer: FutureProducer = self
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "15000")
            .create()
            .map_err(|e| KafkaError::Client(e.to_string()))?;
        let mut deliveries = Vec::with_capacity(count);
        for i in 0..count {
            let payload = format!("message {i}");
            // Enqueued at once (linger batches them); the futures resolve on the broker's acks.
            let delivery = producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                )
                .map_err(|(e, _)| KafkaError::Client(format!("produce: {e}")))?;
            deliveries.push(delivery);
        }
        let mut last = -1;
        for delivery in deliveries {
            let delivered = tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(5), delivery)
                .await
                .map_err(|_| KafkaError::Client("no delivery report in time".into()))?
                .map_err(|_| KafkaError::Client("the producer went away".into()))?
                .map_err(|(e, _)| KafkaError::Client(format!("produce: {e}")))?;
            last = last.max(delivered.offset);
        }
        Ok(last + 1)
    }

    /// Commits `offsets` ((partition, next offset to read)) for `group` on `topic`, as a consumer that never joins
    /// the group (Kafka accepts such commits while the group has no members).
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), KafkaError> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| KafkaError::Client(e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| KafkaError::Client(e.to_string()))?;
        }
        // A fresh broker creates its offsets topic on the first group request, and answers "coordinator not
        // available" / "load in progress" until it is ready: retry, bounded.
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(e) if coordinator_not_ready(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(KafkaError::Client(format!("commit for group {group}: {e}")));
                }
            }
        }
    }
}

/// The errors a group request gets while the broker's group coordinator is still starting.
fn coordinator_not_ready(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::CoordinatorNotAvailable
                | Code::WaitingForCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::NotCoordinator
                | Code::RequestTimedOut
                | Code::OperationTimedOut
        )
    )
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!(
                "stopping the test broker in {}: {error}",
                self.dir.path().display()
            );
        }
    }
}
