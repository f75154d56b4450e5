//! What a run started, the scaler and the replicas: stopped together on every path out of the run.

use std::time::Duration;

use crate::chaos::ScalerSlot;
use crate::replicas::ReplicaPool;

/// The scaler's SIGTERM grace.
const SCALER_GRACE: Duration = Duration::from_secs(10);

/// What the lab started: stopped on every path out of a run.
pub(crate) struct Children {
    pub(crate) registry: procs::Registry,
    /// Shared with the chaos faults, which may kill and restart it.
    pub(crate) scaler: ScalerSlot,
    pub(crate) pool: Option<ReplicaPool>,
}

impl Children {
    /// Stop the replicas, then the scaler (SIGTERM, grace, SIGKILL); returns every pid that was spawned.
    pub(crate) async fn stop(&mut self) -> Vec<u32> {
        let mut pids = self.pool.as_ref().map(|p| p.pids()).unwrap_or_default();
        if let Some(pool) = &self.pool {
            pool.shutdown().await;
        }
        if let Some(mut scaler) = self.scaler.take() {
            pids.push(scaler.pid());
            scaler.stop(SCALER_GRACE).await;
        }
        pids
    }
}
