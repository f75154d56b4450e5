//! The way in for faults from outside a run's schedule (the console's chaos buttons): open while the load runs, closed
//! before the children stop, so a late click cannot hit a replica that is draining for the end of the run.

use std::sync::Mutex;

use super::{ChaosError, ChaosRun, Fault, Targets, inject};

/// Why a fault from outside was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("the run is not loading (not started yet, or its load has ended)")]
    Closed,
    #[error(transparent)]
    Missed(#[from] ChaosError),
}

/// One run's door for faults; the run opens it with its targets once the load starts.
#[derive(Default)]
pub struct ChaosPort {
    open: Mutex<Option<(Targets, ChaosRun)>>,
}

impl ChaosPort {
    pub fn open(&self, targets: Targets, run: ChaosRun) {
        *self.lock() = Some((targets, run));
    }

    pub fn close(&self) {
        *self.lock() = None;
    }

    /// Carry out `fault` now; it is measured with the run's other faults when the run ends. Returns what was hit.
    pub async fn inject(&self, fault: &Fault) -> Result<String, PortError> {
        let (targets, run) = self.lock().clone().ok_or(PortError::Closed)?;
        let handle = inject(fault, &targets).await?;
        let hit = handle
            .lock()
            .expect("fault record")
            .hit
            .clone()
            .unwrap_or_else(|why| why);
        run.add(Ok(handle));
        Ok(hit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Targets, ChaosRun)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}
