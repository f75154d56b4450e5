//! How a run starts its children, the same for the HTTP and the Kafka scenario: the scaler into the slot the chaos
//! faults share, then the Deployment's first replicas awaited. The callers hold the slot and the pool, so whatever
//! this returns, their one stop reaches everything started here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use contract::listening::kind;
use tokio_util::sync::CancellationToken;

use crate::LabError;
use crate::chaos::ScalerSlot;
use crate::process::child;
use crate::replicas::ReplicaPool;

/// Bound on a child's start (`listening`) and on the first replicas' readiness.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The scaler as started: its pid and addresses.
pub(crate) struct StartedScaler {
    pub pid: u32,
    pub grpc: String,
    pub http: String,
}

/// Start the scaler on loopback with free ports, `extra` appended (a restart by a fault passes them again), and put it
/// in `slot`.
pub(crate) async fn start_scaler(
    binary: PathBuf,
    extra: &[&str],
    slot: &ScalerSlot,
    registry: &procs::Registry,
    interrupt: &CancellationToken,
) -> Result<StartedScaler, LabError> {
    let mut args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().cloned());
    let starting = child(
        "scaler",
        &binary,
        &args,
        &[kind::GRPC, kind::HTTP],
        START_TIMEOUT,
        registry,
    )
    .start();
    let scaler = tokio::select! {
        started = starting => started.map_err(|source| LabError::Start {
            what: "the scaler".into(),
            source,
        })?,
        // Dropping the start kills the half-started scaler.
        _ = interrupt.cancelled() => return Err(LabError::Interrupted),
    };
    let address = |k: &str| scaler.addr(k).map(|a| a.to_string()).unwrap_or_default();
    let started = StartedScaler {
        pid: scaler.pid(),
        grpc: address(kind::GRPC),
        http: address(kind::HTTP),
    };
    slot.install(scaler, binary, registry.clone(), START_TIMEOUT);
    slot.add_restart_args(&extra);
    Ok(started)
}

/// Scale `pool` to `initial` (the Deployment starts at the HPA's minimum) and wait until that many are ready.
pub(crate) async fn first_replicas(
    pool: &ReplicaPool,
    initial: u32,
    interrupt: &CancellationToken,
) -> Result<(), LabError> {
    pool.scale_to(initial);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let snapshot = pool.snapshot();
        if snapshot.ready >= initial {
            return Ok(());
        }
        if interrupt.is_cancelled() {
            return Err(LabError::Interrupted);
        }
        // A replica that failed to start is not retried here: the user needs the reason, not a 30 s wait.
        if !snapshot.problems.is_empty() || Instant::now() >= deadline {
            let why = if snapshot.problems.is_empty() {
                format!("not ready within {START_TIMEOUT:?}")
            } else {
                snapshot.problems.join("\n")
            };
            return Err(LabError::NotReady(format!(
                "the first consumer replica did not become ready: {why}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
