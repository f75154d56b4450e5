//! The set of children that are alive, shared by every task that starts one, so that a supervisor can stop them all
//! at once whoever owns each [`crate::Child`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::signal::{Handle, SIGKILL};

/// A live child: its name and its signal handle, by pid.
type Live = BTreeMap<u32, (String, Arc<Handle>)>;

/// Live children by pid. A [`crate::Child`] started with [`crate::Spawn::register`] is added when it is spawned and
/// removed when it is reaped or dropped.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    live: Arc<Mutex<Live>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Every change is a single insert or removal, so a panic elsewhere cannot leave the map half-changed.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, pid: u32, name: &str, handle: Arc<Handle>) {
        self.lock().insert(pid, (name.to_string(), handle));
    }

    pub(crate) fn remove(&self, pid: u32) {
        self.lock().remove(&pid);
    }

    /// The pids and names of the children not reaped yet.
    pub fn live(&self) -> Vec<(u32, String)> {
        self.lock()
            .iter()
            .map(|(pid, (name, _))| (*pid, name.clone()))
            .collect()
    }

    /// Sends SIGKILL to every child not reaped yet and returns their pids. Their owners still reap them (a killed
    /// child's wait returns at once).
    pub fn kill_all(&self) -> Vec<u32> {
        let live = self.lock();
        for (_, handle) in live.values() {
            handle.signal(SIGKILL);
        }
        live.keys().copied().collect()
    }
}
