//! What the registry remembers: one [`TriggerEntry`] per (ScaledObject, metricName) with its cached [`Reading`] and
//! change notifications, and one [`Source`] per distinct source with its poll statistics. The registry creates them,
//! the pollers write into them, the RPCs and `/explain` read them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::reading::{Observed, Reading};
use crate::trigger::{SourceSpec, TriggerSpec};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data stays consistent: every critical
/// section here is a plain field update).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Identifies a trigger: the ScaledObject (`namespace/name`) and the trigger's metricName.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TriggerKey {
    pub scaled_object: String,
    pub metric_name: String,
}

/// One remembered trigger.
pub struct TriggerEntry {
    pub key: TriggerKey,
    pub source: Arc<Source>,
    spec_tx: watch::Sender<Arc<TriggerSpec>>,
    active_tx: watch::Sender<Option<bool>>,
    reading: Mutex<Reading>,
    last_used: Mutex<Instant>,
    streams: AtomicUsize,
}

impl TriggerEntry {
    pub fn new(key: TriggerKey, source: Arc<Source>, spec: TriggerSpec) -> TriggerEntry {
        TriggerEntry {
            key,
            source,
            spec_tx: watch::channel(Arc::new(spec)).0,
            active_tx: watch::channel(None).0,
            reading: Mutex::new(Reading::default()),
            last_used: Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        }
    }

    pub fn spec(&self) -> Arc<TriggerSpec> {
        self.spec_tx.borrow().clone()
    }

    /// Replaces the spec if it differs (e.g. KEDA sent a new target); true when it changed.
    pub fn update_spec(&self, spec: &TriggerSpec) -> bool {
        self.spec_tx.send_if_modified(|current| {
            if **current != *spec {
                *current = Arc::new(spec.clone());
                true
            } else {
                false
            }
        })
    }

    pub fn reading(&self) -> Reading {
        lock(&self.reading).clone()
    }

    /// Stores a fresh value (see [`Reading::record_value`]) and notifies activation watchers on a change.
    pub fn record_value(&self, observed: Observed, deactivate_after_polls: u32) {
        let activation_target = self.spec().activation_target;
        let active =
            lock(&self.reading).record_value(observed, activation_target, deactivate_after_polls);
        self.active_tx.send_if_modified(|current| {
            if *current != Some(active) {
                *current = Some(active);
                true
            } else {
                false
            }
        });
    }

    pub fn record_error(&self, error: String) {
        lock(&self.reading).record_error(error);
    }

    pub fn record_pending(&self, why: String, replicas: Option<u32>) {
        lock(&self.reading).record_pending(why, replicas);
    }

    /// Receives the debounced activation state on every change.
    pub fn subscribe_active(&self) -> watch::Receiver<Option<bool>> {
        self.active_tx.subscribe()
    }

    /// Receives the spec whenever it changes (e.g. a new target).
    pub fn subscribe_spec(&self) -> watch::Receiver<Arc<TriggerSpec>> {
        self.spec_tx.subscribe()
    }

    /// Marks a stream open on this trigger (kept from expiry); the guard closes it.
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard {
            entry: self.clone(),
        }
    }

    /// Marks the trigger as used now.
    pub fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// No open stream and no use for `idle`.
    pub fn is_idle(&self, idle: Duration) -> bool {
        self.streams.load(Ordering::SeqCst) == 0 && lock(&self.last_used).elapsed() >= idle
    }
}

/// Keeps a trigger alive while a stream is open on it.
pub struct StreamGuard {
    entry: Arc<TriggerEntry>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.entry.streams.fetch_sub(1, Ordering::SeqCst);
        self.entry.touch();
    }
}

/// Poll statistics of a source, for `/explain`.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    pub polls: u64,
    pub errors: u64,
    /// HTTP requests sent to the source (scrapes or queries).
    pub requests: u64,
    pub last_poll_at: Option<Instant>,
    pub last_duration: Option<Duration>,
    pub last_error: Option<String>,
    /// Pods scraped in the last poll (direct sources).
    pub pods: Option<usize>,
}

/// One distinct source and its poller's shared state.
pub struct Source {
    pub id: String,
    pub spec: SourceSpec,
    /// `unsafeSsl`: https certificates of this source are not verified.
    pub unsafe_ssl: bool,
    pub interval: Duration,
    pub max_staleness: Duration,
    generation: watch::Sender<u64>,
    stats: Mutex<SourceStats>,
}

impl Source {
    pub fn new(
        id: String,
        spec: SourceSpec,
        unsafe_ssl: bool,
        interval: Duration,
        max_staleness: Duration,
    ) -> Source {
        Source {
            id,
            spec,
            unsafe_ssl,
            interval,
            max_staleness,
            generation: watch::channel(0).0,
            stats: Mutex::new(SourceStats::default()),
        }
    }

    /// The identity of the source a trigger reads: its URL or targets, and whether certificates are verified (two
    /// triggers on one URL that differ in `unsafeSsl` must not share a poller).
    pub fn id_for(spec: &TriggerSpec) -> String {
        let id = spec.source.id();
        if spec.unsafe_ssl {
            format!("{id} (unsafeSsl)")
        } else {
            id
        }
    }

    pub fn stats(&self) -> SourceStats {
        lock(&self.stats).clone()
    }

    pub fn update_stats(&self, update: impl FnOnce(&mut SourceStats)) {
        update(&mut lock(&self.stats));
    }

    /// `direct`, `prometheus` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self.spec {
            SourceSpec::Direct { .. } => "direct",
            SourceSpec::Kafka { .. } => "kafka",
            _ => "prometheus",
        }
    }

    /// Ticks once per finished poll.
    pub fn subscribe_polls(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn poll_finished(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }
}
