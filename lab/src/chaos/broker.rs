//! The Kafka broker as a fault's target (`stop-broker`): the broker the lab started with scripts/kafka/broker.sh is
//! stopped cleanly (SIGTERM: Kafka's controlled shutdown flushes its logs and closes its sockets; SIGKILL only if it
//! ignores that for [`STOP_WAIT`]), stays down for the fault's `duration` counted from the JVM's exit, and is started
//! again by `broker.sh resume`: the same server.properties, so the same ports, and the same data directory, so every
//! message it acknowledged is still there; the fault is over when the broker answers a Metadata request again. A broker
//! given with `--kafka-brokers` is not the lab's to stop: the fault hits nothing and says why.
//!
//! The run closes the slot before its final `verify` ([`BrokerSlot::close`]): a restart still pending then happens
//! at once (the check needs the broker), and none starts after the close (no JVM outlives the run).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// Longest wait for the JVM's clean shutdown before the SIGKILL.
pub const STOP_WAIT: Duration = Duration::from_secs(30);
/// Bound on `broker.sh resume` (the JVM's start and its log recovery).
const RESUME_TIMEOUT: Duration = Duration::from_secs(90);
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// What happened to a stopped broker, in order, sent as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerEvent {
    /// The old JVM exited; `killed`: it ignored SIGTERM for [`STOP_WAIT`] and took a SIGKILL.
    Exited { at: Instant, killed: bool },
    /// `broker.sh resume` started.
    Resumed(Instant),
    /// The restarted broker answered (it serves again).
    Back { at: Instant, pid: Option<u32> },
    /// It did not come back.
    Failed(String),
}

#[derive(Debug)]
enum Kind {
    /// Started by the lab: its script and directory.
    Started { script: PathBuf, dir: PathBuf },
    /// Given with `--kafka-brokers`.
    External,
}

#[derive(Debug, Default)]
struct State {
    down: bool,
    closed: bool,
}

/// The run's broker, shared between the faults and the run's end.
#[derive(Debug, Clone)]
pub struct BrokerSlot {
    kind: Arc<Kind>,
    bootstrap: String,
    state: Arc<Mutex<State>>,
    /// Cancelled by [`BrokerSlot::close`]: a restart waiting out its `duration` happens now (or not at all).
    closing: CancellationToken,
    /// Set when the run is abandoned (its broker guard dropped without the final stop): nothing is started after it,
    /// and a JVM started just before it is SIGKILLed.
    abandoned: Arc<AtomicBool>,
}

impl BrokerSlot {
    /// The broker the lab started in `dir` with `script` (`broker.sh`), serving at `bootstrap`.
    pub fn started(script: PathBuf, dir: PathBuf, bootstrap: &str) -> BrokerSlot {
        BrokerSlot::new(Kind::Started { script, dir }, bootstrap)
    }

    /// A broker the lab did not start (`--kafka-brokers`): faults on it hit nothing.
    pub fn external(bootstrap: &str) -> BrokerSlot {
        BrokerSlot::new(Kind::External, bootstrap)
    }

    fn new(kind: Kind, bootstrap: &str) -> BrokerSlot {
        BrokerSlot {
            kind: Arc::new(kind),
            bootstrap: bootstrap.to_string(),
            state: Arc::default(),
            closing: CancellationToken::new(),
            abandoned: Arc::default(),
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// SIGTERM the broker now; a task waits for the JVM's exit, keeps it down for `down`, starts it again and reports
    /// each step on the returned channel. Returns the old pid and the instant of the SIGTERM.
    pub async fn stop_for(
        &self,
        down: Duration,
    ) -> Result<(u32, Instant, mpsc::UnboundedReceiver<BrokerEvent>), String> {
        let (script, dir) = match &*self.kind {
            Kind::External => {
                return Err(format!(
                    "the broker at {} was given with --kafka-brokers: the lab did not start it and does not stop it",
                    self.bootstrap
                ));
            }
            Kind::Started { script, dir } => (script.clone(), dir.clone()),
        };
        let mut state = self.state.lock().await;
        if state.closed {
            return Err("the run is ending".into());
        }
        if state.down {
            return Err("the broker is already stopped by an earlier fault".into());
        }
        let pid = live_pid(&dir).ok_or("the broker is not running")?;
        let at = Instant::now();
        if !procs::send_signal(pid, SIGTERM) {
            return Err(format!("cannot signal the broker (pid {pid})"));
        }
        state.down = true;
        drop(state);
        let (tx, rx) = mpsc::unbounded_channel();
        let slot = self.clone();
        tokio::spawn(async move {
            let (exited, killed) = wait_exit(pid).await;
            let _ = tx.send(BrokerEvent::Exited { at: exited, killed });
            tokio::select! {
                _ = tokio::time::sleep_until((exited + down).into()) => {}
                _ = slot.closing.cancelled() => {}
            }
            let mut state = slot.state.lock().await;
            if state.closed || slot.abandoned.load(Ordering::SeqCst) {
                let _ = tx.send(BrokerEvent::Failed(
                    "not restarted: the run ended first".into(),
                ));
                return;
            }
            let _ = tx.send(BrokerEvent::Resumed(Instant::now()));
            let resumed = resume(&script, &dir).await;
            if slot.abandoned.load(Ordering::SeqCst) {
                // The guard that stops the broker is gone: this JVM would outlive the run.
                if let Some(pid) = live_pid(&dir) {
                    procs::send_signal(pid, SIGKILL);
                }
                return;
            }
            let event = match resumed {
                Ok(()) => BrokerEvent::Back {
                    at: Instant::now(),
                    pid: live_pid(&dir),
                },
                Err(e) => BrokerEvent::Failed(e),
            };
            let _ = tx.send(event);
            // Back or not, this fault is over: a later one may try again.
            state.down = false;
        });
        Ok((pid, at, rx))
    }

    /// The run is abandoned (a second interrupt dropped it): no restart starts any more. Synchronous, for a `Drop`.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.closing.cancel();
    }

    /// No more faults. With `restore`, a restart still waiting out its duration happens now and is awaited (the final
    /// check needs the broker); without, none starts any more.
    pub async fn close(&self, restore: bool) {
        if restore {
            self.closing.cancel();
            // The waiting task takes the lock after the cancel and restarts the broker; wait for it, bounded.
            let deadline = Instant::now() + RESUME_TIMEOUT + Duration::from_secs(5);
            loop {
                let state = self.state.lock().await;
                if !state.down || Instant::now() >= deadline {
                    break;
                }
                drop(state);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.state.lock().await.closed = true;
        } else {
            self.state.lock().await.closed = true;
            self.closing.cancel();
        }
    }
}

/// Wait for `pid` to exit; SIGKILL after [`STOP_WAIT`]. Returns when it was gone and whether it took the SIGKILL.
async fn wait_exit(pid: u32) -> (Instant, bool) {
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if procs::is_gone(pid) {
            return (Instant::now(), false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    procs::send_signal(pid, SIGKILL);
    for _ in 0..250 {
        if procs::is_gone(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (Instant::now(), true)
}

async fn resume(script: &PathBuf, dir: &PathBuf) -> Result<(), String> {
    let run = tokio::process::Command::new("bash")
        .arg(script)
        .arg("resume")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(RESUME_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "broker.sh resume failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("cannot run {}: {e}", script.display())),
        Err(_) => Err(format!(
            "the broker did not come back within {RESUME_TIMEOUT:?}"
        )),
    }
}

/// The pid in `dir/pid`, if it is alive and is this directory's broker (a recycled pid is never signalled).
pub fn live_pid(dir: &std::path::Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let marker = dir.join("server.properties");
    String::from_utf8_lossy(&cmdline)
        .contains(marker.to_string_lossy().as_ref())
        .then_some(pid)
}

/// A broker stop as it went, from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerOutcome {
    pub bootstrap: String,
    pub old_pid: u32,
    pub exited: Option<Instant>,
    pub killed: bool,
    pub resumed: Option<Instant>,
    /// Serving again, and the new JVM's pid.
    pub back: Option<Instant>,
    pub new_pid: Option<u32>,
    pub error: Option<String>,
}

impl BrokerOutcome {
    pub fn apply(&mut self, event: &BrokerEvent) {
        match event {
            BrokerEvent::Exited { at, killed } => {
                self.exited = Some(*at);
                self.killed = *killed;
            }
            BrokerEvent::Resumed(at) => self.resumed = Some(*at),
            BrokerEvent::Back { at, pid } => {
                self.back = Some(*at);
                self.new_pid = *pid;
            }
            BrokerEvent::Failed(why) => self.error = Some(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chaos_spec::{ChaosAction, ChaosTarget};

    use super::*;
    use crate::chaos::{ChaosError, Fault, ScalerSlot, Targets, inject};

    fn stop_broker() -> Fault {
        Fault {
            action: ChaosAction::StopBroker,
            target: ChaosTarget::Broker,
            duration: Some(Duration::from_secs(1)),
        }
    }

    fn targets(broker: Option<BrokerSlot>) -> Targets {
        Targets {
            pool: None,
            scaler: ScalerSlot::default(),
            broker,
            restart_backoff: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_broker_the_lab_did_not_start_is_not_stopped() {
        let err = inject(
            &stop_broker(),
            &targets(Some(BrokerSlot::external("127.0.0.1:9092"))),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        let ChaosError::NoTarget { reason, .. } = &err;
        assert!(
            reason.contains("--kafka-brokers") && reason.contains("127.0.0.1:9092"),
            "{err}"
        );
        let err = inject(&stop_broker(), &targets(None))
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--scenario kafka"), "{err}");
    }

    #[tokio::test]
    async fn a_started_broker_that_is_not_running_is_reported_and_a_closed_slot_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let slot = BrokerSlot::started(
            PathBuf::from("scripts/kafka/broker.sh"),
            dir.path().to_path_buf(),
            "127.0.0.1:1",
        );
        // No pid file: nothing is signalled.
        let err = slot.stop_for(Duration::from_secs(1)).await.unwrap_err();
        assert!(err.contains("not running"), "{err}");
        // A pid file naming a process that is not this directory's broker (this test) is not trusted.
        std::fs::write(dir.path().join("pid"), std::process::id().to_string()).unwrap();
        assert_eq!(live_pid(dir.path()), None);
        slot.close(true).await;
        let err = slot.stop_for(Duration::from_secs(1)).await.unwrap_err();
        assert!(err.contains("ending"), "{err}");
    }
}
