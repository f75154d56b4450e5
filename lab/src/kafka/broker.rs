//! The Kafka scenario's broker and topics: a broker started with scripts/kafka/broker.sh in a fresh temporary
//! directory and the guard that stops it on every path ([`Broker`]: the script detaches the JVM, so it is not a child
//! the lab's process registry would reap), and the topic layout the run creates ([`PARTITIONS`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::{LabArgs, LabError};

/// Partitions of the topic the lab creates: the cap the `kafka` trigger applies (no more consumers than partitions).
pub const PARTITIONS: i32 = 4;
/// Bound on the broker's start (the JVM, storage format and readiness).
const BROKER_START: Duration = Duration::from_secs(90);

/// A broker started by the lab: its directory and JVM pid. Dropping it SIGKILLs the JVM and removes the directory.
#[derive(Debug)]
pub(super) struct Broker {
    script: PathBuf,
    dir: PathBuf,
    /// Its `stop-broker` slot, told when this guard drops so that no restart follows.
    faults: Option<crate::chaos::BrokerSlot>,
}

impl Broker {
    /// The JVM's pid, if it is alive and is this directory's broker (a recycled pid is never signalled).
    pub(super) fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let marker = self.dir.join("server.properties");
        String::from_utf8_lossy(&cmdline)
            .contains(marker.to_string_lossy().as_ref())
            .then_some(pid)
    }

    /// This broker as the target of `stop-broker` faults, serving at `bootstrap`.
    pub(super) fn fault_slot(&mut self, bootstrap: &str) -> crate::chaos::BrokerSlot {
        let slot =
            crate::chaos::BrokerSlot::started(self.script.clone(), self.dir.clone(), bootstrap);
        self.faults = Some(slot.clone());
        slot
    }

    /// SIGTERM and the script's bounded wait, then SIGKILL (drop) if it is still there.
    pub(super) async fn stop(&self) {
        let _ = tokio::process::Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .env("KAFKA_STOP_TIMEOUT", "10")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(slot) = &self.faults {
            slot.abandon();
        }
        if let Some(pid) = self.pid() {
            procs::send_signal(pid, 9);
            for _ in 0..50 {
                if procs::is_gone(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn broker_script(args: &LabArgs) -> PathBuf {
    if let Some(path) = &args.kafka_script {
        return path.clone();
    }
    let here = PathBuf::from("scripts/kafka/broker.sh");
    if here.is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka/broker.sh")
}

/// Start a broker in a fresh temporary directory; the returned guard is set before the JVM exists, so an
/// interrupt during the start leaves nothing behind.
pub(super) async fn start_broker(
    args: &LabArgs,
    slot: &mut Option<Broker>,
    interrupt: &CancellationToken,
) -> Result<String, LabError> {
    let script = broker_script(args);
    if !script.is_file() {
        return Err(LabError::Usage(format!(
            "broker script not found at {} (pass --kafka-script or --kafka-brokers)",
            script.display()
        )));
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("lab-kafka-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let broker = slot.insert(Broker {
        script: script.clone(),
        dir: dir.clone(),
        faults: None,
    });
    let run = tokio::process::Command::new("bash")
        .arg(&broker.script)
        .arg("start")
        .arg(&broker.dir)
        .env("KAFKA_NUM_PARTITIONS", PARTITIONS.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::select! {
        out = tokio::time::timeout(BROKER_START, run) => match out {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(LabError::Runtime(format!("cannot run {}: {e}", script.display()))),
            Err(_) => return Err(LabError::NotReady(format!("the broker did not start within {BROKER_START:?}"))),
        },
        _ = interrupt.cancelled() => return Err(LabError::Interrupted),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap="))
        .filter(|_| output.status.success())
    {
        Some(bootstrap) => Ok(bootstrap.trim().to_string()),
        None => Err(LabError::NotReady(format!(
            "the broker did not start: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

/// Create the topic and `<topic>.processed` (the broker has automatic topic creation off); existing ones are kept.
pub(super) async fn create_topics(brokers: &str, topic: &str) -> Result<(), LabError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| LabError::Usage(format!("Kafka brokers {brokers:?}: {e}")))?;
    let processed = format!("{topic}.processed");
    let topics = [
        NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&processed, PARTITIONS, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| LabError::Runtime(format!("creating topics on {brokers}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LabError::Runtime(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}
