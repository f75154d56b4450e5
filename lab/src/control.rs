//! The lab's control loop: every pollingInterval it asks the scaler for each trigger (as KEDA does), steps the
//! `autoscaler` controller (KEDA + HPA), logs the decision and applies it to the replica pool; and the replica view
//! the load engine's monitor reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoscaler::{Controller, Decision, ScalingConfig, StepInput};
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use load::monitor::{MonitorError, ReplicaSnapshot, ReplicaSource};

use crate::LabError;
use crate::keda::{ScalerLink, local_metadata};
use crate::replicas::ReplicaPool;
use crate::view::DecisionRecord;

/// An `external-push` trigger's StreamIsActive: the metadata it is opened with, and its latest answer.
pub(crate) type PushChannel = (
    Arc<Mutex<HashMap<String, String>>>,
    Arc<Mutex<Option<bool>>>,
);

/// The shared state between the control loop, the live view and the replica monitor.
#[derive(Debug, Default)]
pub struct Shared {
    pub last_decision: Option<Decision>,
    pub simulated_replicas: Option<u32>,
}

/// The lab's [`ReplicaSource`]: replicas as the pool and the controller see them.
pub(crate) struct LabSource {
    pub(crate) pool: Option<ReplicaPool>,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl ReplicaSource for LabSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(async move {
            let shared = self.shared.lock().expect("shared lock");
            let desired = shared.last_decision.as_ref().map(|d| d.desired);
            let detail = shared
                .last_decision
                .as_ref()
                .map(|d| format!("decision at {:.3}s: {d}", d.at.as_secs_f64()));
            let (current, ready) = match &self.pool {
                Some(pool) => {
                    let s = pool.snapshot();
                    (Some(s.current), Some(s.ready))
                }
                None => (shared.simulated_replicas, None),
            };
            Ok(ReplicaSnapshot {
                desired,
                current,
                ready,
                detail,
                source: "lab".into(),
            })
        })
    }

    fn name(&self) -> String {
        "lab".into()
    }
}

/// The running control loop. Joined once the load is over: a loop that panicked fails the run (exit 6), since a run
/// without its decisions would otherwise read as a successful one that never scaled.
pub(crate) struct ControlTask(JoinHandle<()>);

impl ControlTask {
    pub(crate) async fn finish(self) -> Result<(), LabError> {
        match self.0.await {
            Ok(()) => Ok(()),
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(LabError::Runtime(format!(
                    "the control loop panicked ({message}): no decision was made after it"
                )))
            }
            Err(error) => Err(LabError::Runtime(format!(
                "the control loop ended early: {error}"
            ))),
        }
    }
}

/// A run's control loop once started, the same way by the HTTP and the Kafka scenario, and what the run reads from
/// it. Dropping it stops the decisions and the push watchers, so no path out of a run leaves them going.
pub(crate) struct Control {
    pub task: ControlTask,
    pub shared: Arc<Mutex<Shared>>,
    pub decisions: Arc<Mutex<Vec<DecisionRecord>>>,
    /// Set by the run once the load is over.
    pub load_over: Arc<AtomicBool>,
    pub stop: CancellationToken,
    /// The decision log's zero.
    pub epoch: Instant,
    _stop_on_drop: DropGuard,
}

impl Control {
    /// Opens `out/decisions.jsonl`, holds a StreamIsActive open per `external-push` trigger, and starts deciding
    /// for `pool` (or a simulated count from the HPA's minimum without one). `settle_done` is cancelled once the
    /// scale-down after the load is complete.
    pub(crate) fn start(
        config: &ScalingConfig,
        pool: Option<ReplicaPool>,
        scaler_addr: String,
        out: &Path,
        settle_done: CancellationToken,
    ) -> Result<Control, LabError> {
        let link = ScalerLink::new(&scaler_addr, &config.name, Duration::from_secs(2))
            .map_err(LabError::Usage)?;
        let log_path = out.join("decisions.jsonl");
        let log = File::create(&log_path).map_err(|source| LabError::Io {
            path: log_path.display().to_string(),
            source,
        })?;
        let shared = Arc::new(Mutex::new(Shared {
            last_decision: None,
            simulated_replicas: pool.is_none().then_some(config.hpa_min_replicas()),
        }));
        let decisions: Arc<Mutex<Vec<DecisionRecord>>> = Arc::default();
        let stop = CancellationToken::new();
        let load_over = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let mut push_state: HashMap<String, PushChannel> = HashMap::new();
        let ready_urls = pool.as_ref().map(|p| p.snapshot().ready_urls);
        for trigger in config.triggers.iter().filter(|t| t.kind == "external-push") {
            let metadata = Arc::new(Mutex::new(local_metadata(
                trigger,
                &scaler_addr,
                ready_urls.as_deref(),
                config.time_scale,
            )));
            let latest = Arc::new(Mutex::new(None));
            tokio::spawn(link.clone().watch_push(
                metadata.clone(),
                latest.clone(),
                wake.clone(),
                stop.clone(),
            ));
            push_state.insert(trigger.name.clone(), (metadata, latest));
        }
        let epoch = Instant::now();
        let task = ControlLoop {
            config: config.clone(),
            pool,
            shared: shared.clone(),
            decisions: decisions.clone(),
            link,
            scaler_addr,
            push_state,
            wake,
            log,
            epoch,
            load_over: load_over.clone(),
            settle_done,
            stop: stop.clone(),
        }
        .spawn();
        Ok(Control {
            task,
            shared,
            decisions,
            load_over,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            epoch,
        })
    }
}

/// Everything the control loop reads and writes.
pub(crate) struct ControlLoop {
    pub config: ScalingConfig,
    /// The replicas it scales; `None` with --no-spawn (the count is simulated).
    pub pool: Option<ReplicaPool>,
    pub shared: Arc<Mutex<Shared>>,
    pub decisions: Arc<Mutex<Vec<DecisionRecord>>>,
    pub link: ScalerLink,
    pub scaler_addr: String,
    pub push_state: HashMap<String, PushChannel>,
    /// A StreamIsActive answer changed.
    pub wake: Arc<Notify>,
    /// decisions.jsonl, opened before the loop starts.
    pub log: File,
    pub epoch: Instant,
    /// Set once the load is over: only then may a settled count end the watch.
    pub load_over: Arc<AtomicBool>,
    /// Cancelled here once the scale-down after the load is complete.
    pub settle_done: CancellationToken,
    /// Ends the loop.
    pub stop: CancellationToken,
}

impl ControlLoop {
    /// Runs the loop in a task until `stop` is cancelled, at once even in the middle of a poll (a step has no state
    /// that an interruption could leave half-written: applying a decision is one synchronous call).
    pub fn spawn(self) -> ControlTask {
        let stop = self.stop.clone();
        ControlTask(tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = self.run() => {}
            }
        }))
    }

    async fn run(self) {
        let ControlLoop {
            config,
            pool,
            shared,
            decisions,
            link,
            scaler_addr,
            push_state,
            wake,
            mut log,
            epoch,
            load_over,
            settle_done,
            stop,
        } = self;
        let mut controller = Controller::new(config.clone());
        loop {
            // KEDA starts its pollingInterval timer before it asks the scalers (scale_handler's startScaleLoop), so
            // a poll begins every interval, or at once when the asking took longer.
            let next_poll = tokio::time::Instant::now() + config.polling_interval;
            let snapshot = match &pool {
                Some(p) => {
                    p.reap_dead().await;
                    Some(p.snapshot())
                }
                None => None,
            };
            let (current, ready) = match &snapshot {
                Some(s) => (s.current, s.ready),
                None => {
                    let simulated = shared
                        .lock()
                        .expect("shared")
                        .simulated_replicas
                        .unwrap_or(1);
                    (simulated, simulated)
                }
            };
            let urls = snapshot.as_ref().map(|s| s.ready_urls.clone());
            // All triggers are asked at once: one slow source must not delay the others' readings.
            let asks = config.triggers.iter().map(|trigger| {
                let metadata =
                    local_metadata(trigger, &scaler_addr, urls.as_deref(), config.time_scale);
                let pushed = push_state.get(&trigger.name).and_then(|(m, latest)| {
                    *m.lock().expect("metadata lock") = metadata.clone();
                    *latest.lock().expect("push lock")
                });
                let link = &link;
                async move { link.observe(trigger, &metadata, pushed).await }
            });
            let observations = futures::future::join_all(asks).await;
            let decision = controller.step(&StepInput {
                now: epoch.elapsed(),
                current_replicas: current,
                ready_replicas: ready,
                observations,
            });
            let record = DecisionRecord::from_decision(&decision, ready);
            // A failed write is not worth stopping the run for; the same records are returned and charted.
            let _ = writeln!(
                log,
                "{}",
                serde_json::to_string(&record).unwrap_or_default()
            );
            if decision.desired != decision.current {
                tracing::debug!(
                    t_s = record.t_s,
                    current = decision.current,
                    desired = decision.desired,
                    reason = %decision,
                    "scaling decision"
                );
            }
            decisions.lock().expect("decisions").push(record);
            match &pool {
                Some(pool) if decision.desired != decision.current => {
                    pool.scale_to(decision.desired)
                }
                Some(_) => {}
                None => shared.lock().expect("shared").simulated_replicas = Some(decision.desired),
            }
            // After the load, stop watching once the target is back at its resting count (KEDA's
            // idle/zero count or the HPA minimum) with nothing left to drain: the cycle is complete.
            let resting = config
                .idle_replica_count
                .unwrap_or(if config.min_replica_count == 0 {
                    0
                } else {
                    config.hpa_min_replicas()
                });
            let settled = load_over.load(Ordering::Relaxed)
                && decision.desired == decision.current
                && decision.current <= resting
                && snapshot.as_ref().is_none_or(|s| s.draining == 0);
            let at_idle = decision.desired <= resting && resting == 0;
            shared.lock().expect("shared").last_decision = Some(decision);
            if settled {
                settle_done.cancel();
            }
            // The next poll is due pollingInterval after this one began. A StreamIsActive push wakes the loop early
            // only while the target is idle (at zero): KEDA uses pushes for activation; the HPA keeps its own pace.
            let stopped = loop {
                tokio::select! {
                    _ = stop.cancelled() => break true,
                    _ = tokio::time::sleep_until(next_poll) => break false,
                    _ = wake.notified() => {
                        if at_idle {
                            break false;
                        }
                    }
                }
            };
            if stopped {
                break;
            }
        }
    }
}

#[cfg(test)]
mod control_task_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_control_loop_fails_the_run() {
        let task = ControlTask(tokio::spawn(async { panic!("scaler answer out of range") }));
        let error = task.finish().await.expect_err("a panic is a failure");
        assert_eq!(error.exit_code(), contract::exit::RUNTIME_ERROR);
        assert!(
            error.to_string().contains("scaler answer out of range"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_stopped_control_loop_is_fine() {
        let task = ControlTask(tokio::spawn(async {}));
        task.finish().await.expect("a loop that ended cleanly");
    }
}
