//! Chaos in the cluster-free lab: faults injected while the load runs, and what they cost, measured.
//!
//! A fault ([`Fault`]) comes from a profile's `chaos:` list or the `--chaos` flag (the fields and their checks live
//! with the profile, `chaos_spec::ChaosSpec`) and is carried out by [`inject`] on the run's [`Targets`]: the
//! replica pool (kill, terminate, freeze: `replicas::faults`) and the scaler ([`scaler`]: kill, freeze, restart after
//! a back-off) and, in the Kafka scenario, the broker ([`broker`]: `stop-broker`, a clean stop and a restart on the
//! same port with the same data). [`inject`] is the one entry point, also for callers outside a scheduled run (the console).
//! [`schedule`] runs a profile's faults at their times beside the control loop, [`port`] takes faults from outside
//! while the load runs (the console), [`measure`] turns the request log,
//! the controller's decisions and the replicas' lives into the report's `chaos` section, [`threshold`] judges it.

pub mod broker;
pub mod measure;
pub mod port;
pub mod scaler;
pub mod schedule;
pub mod threshold;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_spec::{ChaosAction, ChaosPlace, ChaosSpec, ChaosTarget};

use crate::replicas::{FreezeOutcome, Hit, ReplicaPool};
pub use broker::{BrokerOutcome, BrokerSlot};
pub use port::{ChaosPort, PortError};
pub use scaler::ScalerSlot;
pub use schedule::ChaosRun;

/// Linux signal numbers (the same on x86_64 and aarch64).
pub(crate) use crate::process::{SIGCONT, SIGSTOP};

/// One fault to inject now.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub action: ChaosAction,
    pub target: ChaosTarget,
    /// Freeze length; for a kill, the restart back-off (else [`Targets::restart_backoff`]).
    pub duration: Option<Duration>,
}

impl Fault {
    /// The fault a (time-scaled) profile entry asks for.
    pub fn from_spec(spec: &ChaosSpec) -> Fault {
        Fault {
            action: spec.action,
            target: spec.target(),
            duration: spec.duration,
        }
    }
}

/// What faults act on.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `None` with `--no-spawn`: no replica is the lab's to break.
    pub pool: Option<ReplicaPool>,
    pub scaler: ScalerSlot,
    /// The Kafka scenario's broker; `None` in the http scenario (no broker).
    pub broker: Option<BrokerSlot>,
    /// A killed replica's or scaler's restart back-off when the fault gives none (time-scaled).
    pub restart_backoff: Duration,
}

/// Why a fault hit nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChaosError {
    #[error("{action} {target}: {reason}")]
    NoTarget {
        action: ChaosAction,
        target: ChaosTarget,
        reason: String,
    },
}

/// A fault as it happened, updated by its follow-ups (a freeze's return, a restart).
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub fault: Fault,
    /// When it was asked for, and when it took effect (the SIGKILL, SIGTERM, SIGSTOP).
    pub asked: Instant,
    pub at: Instant,
    /// `consumer-3 (pid 1234)`, or why nothing was hit.
    pub hit: Result<String, String>,
    pub replica: Option<Hit>,
    /// Freeze of a replica: when it left the targets, was continued, returned.
    pub freeze: FreezeOutcome,
    /// Scaler faults: when the restarted scaler listened, or the frozen one was continued.
    pub scaler_back: Option<Instant>,
    /// `stop-broker`: the stop, the restart, the return.
    pub broker: Option<BrokerOutcome>,
    /// The back-off or freeze length in force.
    pub duration: Option<Duration>,
    /// Lines for the live view, each printed once.
    pub lines: Vec<String>,
}

/// A fault being followed: its record, updated by the tasks that finish it.
pub type FaultHandle = Arc<Mutex<FaultRecord>>;

/// Carry out `fault` now on `targets`. Replica and scaler faults take effect before this returns; what follows (a
/// freeze's probe and SIGCONT, a restart after the back-off) runs in tasks that update the returned record.
pub async fn inject(fault: &Fault, targets: &Targets) -> Result<FaultHandle, ChaosError> {
    let no_target = |reason: String| ChaosError::NoTarget {
        action: fault.action,
        target: fault.target.clone(),
        reason,
    };
    let asked = Instant::now();
    let which = match fault.target {
        ChaosTarget::ReplicaN(n) => Some(n),
        _ => None,
    };
    let backoff = fault.duration.unwrap_or(targets.restart_backoff);
    let record = |at: Instant, hit: String, replica: Option<Hit>, duration: Option<Duration>| {
        Arc::new(Mutex::new(FaultRecord {
            fault: fault.clone(),
            asked,
            at,
            hit: Ok(hit),
            replica,
            freeze: FreezeOutcome::default(),
            scaler_back: None,
            broker: None,
            duration,
            lines: Vec::new(),
        }))
    };
    let describe = |h: &Hit| format!("{} (pid {})", h.name, h.pid);
    let pool = || {
        targets
            .pool
            .as_ref()
            .ok_or_else(|| no_target("no replicas are the lab's to break (--no-spawn)".into()))
    };
    match fault.action {
        ChaosAction::Kill => {
            let (hit, at) = pool()?.kill(which, backoff).await.map_err(no_target)?;
            let handle = record(at, describe(&hit), Some(hit.clone()), Some(backoff));
            note(
                &handle,
                format!(
                    "chaos: kill {} (SIGKILL); its place restarts after a back-off of {}",
                    describe(&hit),
                    secs(backoff)
                ),
            );
            Ok(handle)
        }
        ChaosAction::Terminate => {
            let (hit, at) = pool()?.terminate(which).map_err(no_target)?;
            let handle = record(at, describe(&hit), Some(hit.clone()), None);
            note(
                &handle,
                format!(
                    "chaos: terminate {} (SIGTERM, drain); a replacement starts now",
                    describe(&hit)
                ),
            );
            Ok(handle)
        }
        ChaosAction::Freeze => {
            let pool = pool()?.clone();
            let duration = fault.duration.unwrap_or(targets.restart_backoff);
            let (hit, at) = pool.freeze(which).map_err(no_target)?;
            let handle = record(at, describe(&hit), Some(hit.clone()), Some(duration));
            note(
                &handle,
                format!(
                    "chaos: freeze {} (SIGSTOP) for {}",
                    describe(&hit),
                    secs(duration)
                ),
            );
            let follow = handle.clone();
            tokio::spawn(async move {
                let outcome = pool.watch_frozen(&hit, at, duration).await;
                let since = |t: Option<Instant>| t.map(|t| secs(t.saturating_duration_since(at)));
                let mut r = follow.lock().expect("fault record");
                r.freeze = outcome;
                let line = format!(
                    "chaos: {} left the targets after {}, continued after {}, back in the targets after {}",
                    hit.name,
                    since(outcome.left).unwrap_or_else(|| "- (its readiness never failed)".into()),
                    since(outcome.continued).unwrap_or_else(|| "-".into()),
                    since(outcome.returned).unwrap_or_else(|| "- (not back)".into()),
                );
                r.lines.push(line);
            });
            Ok(handle)
        }
        ChaosAction::StopBroker => stop_broker(fault, targets, asked).await.map_err(no_target),
        ChaosAction::KillScaler | ChaosAction::FreezeScaler => {
            let (pid, at, back, duration, verb) = if fault.action == ChaosAction::KillScaler {
                let (pid, at, back) = targets.scaler.kill(backoff).await.map_err(no_target)?;
                (pid, at, back, backoff, "kill (SIGKILL)")
            } else {
                let duration = fault.duration.unwrap_or(targets.restart_backoff);
                let (pid, at, back) = targets.scaler.freeze(duration).map_err(no_target)?;
                (pid, at, back, duration, "freeze (SIGSTOP)")
            };
            let hit = format!("scaler (pid {pid})");
            let handle = record(at, hit.clone(), None, Some(duration));
            note(
                &handle,
                format!(
                    "chaos: {verb} {hit}; back after {}: the triggers fail until then (KEDA's fallback after failureThreshold for AverageValue, a hold for Value)",
                    secs(duration)
                ),
            );
            let follow = handle.clone();
            tokio::spawn(async move {
                let back = back.await.ok().flatten();
                let mut r = follow.lock().expect("fault record");
                r.scaler_back = back;
                let line = match back {
                    Some(t) => format!(
                        "chaos: the scaler answers again, {} after the fault",
                        secs(t.saturating_duration_since(at))
                    ),
                    None => "chaos: the scaler did not come back before the run ended".to_string(),
                };
                r.lines.push(line);
            });
            Ok(handle)
        }
        // Cluster actions are refused when the run starts (ChaosRun::new) and by the console; this is the last stop.
        ChaosAction::DeletePod
        | ChaosAction::EvictPod
        | ChaosAction::CordonNode
        | ChaosAction::DrainNode
        | ChaosAction::PartitionPod
        | ChaosAction::ScalerToZero => Err(no_target(
            fault
                .action
                .check_place(ChaosPlace::Lab)
                .err()
                .unwrap_or_default(),
        )),
    }
}

/// `stop-broker`: SIGTERM now, the restart after `duration` from the JVM's exit, followed by a task.
async fn stop_broker(
    fault: &Fault,
    targets: &Targets,
    asked: Instant,
) -> Result<FaultHandle, String> {
    let slot = targets.broker.as_ref().ok_or(
        "no Kafka broker in this run: stop-broker runs in the kafka scenario (--scenario kafka)",
    )?;
    let down = fault.duration.unwrap_or(targets.restart_backoff);
    let (pid, at, mut events) = slot.stop_for(down).await?;
    // The address is in the fault's Kafka figures; the hit names the process, as for the scaler.
    let hit = format!("broker (pid {pid})");
    let handle = Arc::new(Mutex::new(FaultRecord {
        fault: fault.clone(),
        asked,
        at,
        hit: Ok(hit.clone()),
        replica: None,
        freeze: FreezeOutcome::default(),
        scaler_back: None,
        broker: Some(BrokerOutcome {
            bootstrap: slot.bootstrap().to_string(),
            old_pid: pid,
            ..BrokerOutcome::default()
        }),
        duration: Some(down),
        lines: Vec::new(),
    }));
    note(
        &handle,
        format!(
            "chaos: stop-broker {hit} at {} (SIGTERM, a clean shutdown); down for {} after it exits, then restarted on the same port with the same data",
            slot.bootstrap(),
            secs(down)
        ),
    );
    let follow = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let mut r = follow.lock().expect("fault record");
            let after = |t: Instant| secs(t.saturating_duration_since(at));
            let line = match &event {
                broker::BrokerEvent::Exited { at: t, killed } => format!(
                    "chaos: the broker exited {} after the SIGTERM{}",
                    after(*t),
                    if *killed {
                        " (it ignored it: SIGKILL)"
                    } else {
                        ""
                    }
                ),
                broker::BrokerEvent::Resumed(t) => {
                    format!(
                        "chaos: restarting the broker, {} after the fault",
                        after(*t)
                    )
                }
                broker::BrokerEvent::Back { at: t, pid } => format!(
                    "chaos: the broker serves again (pid {}), {} after the fault",
                    pid.map_or("?".into(), |p| p.to_string()),
                    after(*t)
                ),
                broker::BrokerEvent::Failed(why) => format!("chaos: the broker is not back: {why}"),
            };
            if let Some(b) = r.broker.as_mut() {
                b.apply(&event);
            }
            r.lines.push(line);
        }
    });
    Ok(handle)
}

fn note(handle: &FaultHandle, line: String) {
    handle.lock().expect("fault record").lines.push(line);
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
