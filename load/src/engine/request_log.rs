//! An optional log of every request's outcome: when it was due, when it picked its target and which, when it ended and
//! how. Off by default (a run's statistics need none of it); the lab turns it on for chaos runs, whose figures (requests
//! failed between a fault and the recovery, requests in flight on a killed replica) are counts of these records, not
//! estimates from the per-interval statistics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Outcome;
use crate::targets::Target;

/// One request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Its scheduled start.
    pub scheduled: Instant,
    /// Just before it took its target from the set (`None` when it was dropped or no target was there).
    pub picked: Option<Instant>,
    /// When its outcome was known (for a dropped request: when it was dropped).
    pub ended: Instant,
    pub target: Option<Arc<Target>>,
    /// The `x-served-by` name of the replica that answered.
    pub served_by: Option<String>,
    /// `None`: dropped (the outstanding cap was reached; never sent).
    pub outcome: Option<Outcome>,
    /// From the scheduled start to the end.
    pub latency: Duration,
}

/// A cloneable handle on the log; every clone appends to the same records.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    records: Arc<Mutex<Vec<RequestRecord>>>,
}

impl RequestLog {
    pub fn new() -> RequestLog {
        RequestLog::default()
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        self.records.lock().expect("request log").push(record);
    }

    /// Every record so far, in the order outcomes became known.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().expect("request log").clone()
    }

    pub fn len(&self) -> usize {
        self.records.lock().expect("request log").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
