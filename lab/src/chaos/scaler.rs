//! The scaler as a Deployment of one: the process the lab started, the faults that hit it (SIGKILL, SIGSTOP) and its
//! restart after a back-off on the same ports, as a Service keeps its address while its pod is replaced.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::listening::kind;
use tokio::task::JoinHandle;

use crate::process::child;

/// How to start the scaler again.
#[derive(Debug, Clone)]
struct Respawn {
    binary: PathBuf,
    args: Vec<String>,
    registry: procs::Registry,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct Slot {
    child: Option<procs::Child>,
    respawn: Option<Respawn>,
    /// Taken for the final stop: nothing is restarted after it.
    closed: bool,
    frozen: bool,
}

/// The scaler process, shared between the run (which stops it at the end) and the faults.
#[derive(Debug, Clone, Default)]
pub struct ScalerSlot {
    inner: Arc<Mutex<Slot>>,
}

impl ScalerSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.inner.lock().expect("scaler slot")
    }

    /// Hold the started scaler; a restart runs `binary` on its current gRPC and HTTP ports.
    pub fn install(
        &self,
        scaler: procs::Child,
        binary: PathBuf,
        registry: procs::Registry,
        timeout: Duration,
    ) {
        let port = |k: &str| scaler.addr(k).map_or(0, |a| a.port()).to_string();
        let args = vec![
            "--host".to_string(),
            "127.0.0.1".to_string(),
            "--grpc-port".to_string(),
            port(kind::GRPC),
            "--http-port".to_string(),
            port(kind::HTTP),
        ];
        let mut slot = self.lock();
        slot.child = Some(scaler);
        slot.respawn = Some(Respawn {
            binary,
            args,
            registry,
            timeout,
        });
    }

    /// Arguments a restart passes besides the host and ports (the Kafka scenario's `--kafka-poll-interval`).
    pub fn add_restart_args(&self, extra: &[String]) {
        if let Some(respawn) = self.lock().respawn.as_mut() {
            respawn.args.extend(extra.iter().cloned());
        }
    }

    /// The scaler for the final stop; no restart follows. A frozen one is continued first, so it can drain.
    pub fn take(&self) -> Option<procs::Child> {
        let mut slot = self.lock();
        slot.closed = true;
        let child = slot.child.take();
        if slot.frozen
            && let Some(c) = &child
        {
            c.signal(super::SIGCONT);
        }
        child
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(procs::Child::pid)
    }

    /// SIGKILL the scaler; the returned task starts it again after `backoff` and ends with the instant the new one
    /// is listening (`None`: the run ended first, or it did not start).
    pub async fn kill(
        &self,
        backoff: Duration,
    ) -> Result<(u32, Instant, JoinHandle<Option<Instant>>), String> {
        let (mut process, respawn) = {
            let mut slot = self.lock();
            let process = slot.child.take().ok_or("no scaler is running")?;
            slot.frozen = false;
            (
                process,
                slot.respawn
                    .clone()
                    .ok_or("the scaler cannot be restarted")?,
            )
        };
        let pid = process.pid();
        let at = Instant::now();
        process.kill_and_reap().await;
        let slot = self.clone();
        let restart = tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            if slot.lock().closed {
                return None;
            }
            let started = child(
                "scaler",
                &respawn.binary,
                &respawn.args,
                &[kind::GRPC, kind::HTTP],
                respawn.timeout,
                &respawn.registry,
            )
            .start()
            .await;
            let scaler = started
                .map_err(|e| tracing::warn!(error = %e, "the scaler did not restart"))
                .ok()?;
            let ready = Instant::now();
            let refused = {
                let mut s = slot.lock();
                if s.closed {
                    Some(scaler)
                } else {
                    s.child = Some(scaler);
                    None
                }
            };
            match refused {
                // The run ended while it started: it is not wanted any more.
                Some(mut late) => {
                    late.stop(Duration::from_secs(5)).await;
                    None
                }
                None => Some(ready),
            }
        });
        Ok((pid, at, restart))
    }

    /// SIGSTOP the scaler; the returned task sends SIGCONT after `duration` and ends with that instant.
    pub fn freeze(
        &self,
        duration: Duration,
    ) -> Result<(u32, Instant, JoinHandle<Option<Instant>>), String> {
        let pid = {
            let mut slot = self.lock();
            let process = slot.child.as_ref().ok_or("no scaler is running")?;
            process.signal(super::SIGSTOP);
            let pid = process.pid();
            slot.frozen = true;
            pid
        };
        let at = Instant::now();
        let slot = self.clone();
        let thaw = tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let mut s = slot.lock();
            s.frozen = false;
            s.child.as_ref().map(|c| {
                c.signal(super::SIGCONT);
                Instant::now()
            })
        });
        Ok((pid, at, thaw))
    }
}
