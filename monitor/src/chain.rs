//! Sources made of sources: [`FallbackSource`] (the first that answers) and [`SignalTap`] (counts from one source,
//! trigger readings from the scaler's `/explain` on every observation).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{ExplainSource, MonitorError, ReplicaSnapshot, ReplicaSource, ScalingRecord};

/// Tries its sources in order and sticks with the first that answers; when it fails later, falls through again.
pub struct FallbackSource {
    sources: Vec<Arc<dyn ReplicaSource>>,
    preferred: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for FallbackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackSource")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl FallbackSource {
    pub fn new(sources: Vec<Arc<dyn ReplicaSource>>) -> FallbackSource {
        FallbackSource {
            sources,
            preferred: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    async fn observe_now(&self) -> Result<ReplicaSnapshot, MonitorError> {
        use std::sync::atomic::Ordering;
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.sources.len();
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            match self.sources[idx].observe().await {
                Ok(s) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(s);
                }
                Err(e) => failures.push(format!("{}: {e}", self.sources[idx].name())),
            }
        }
        Err(MonitorError::NoSource(failures.join("; ")))
    }
}

impl ReplicaSource for FallbackSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(self.observe_now())
    }
    fn name(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" | ")
    }
    fn record(&self) -> Option<ScalingRecord> {
        let mut out: Option<ScalingRecord> = None;
        for r in self.sources.iter().filter_map(|s| s.record()) {
            out.get_or_insert_with(ScalingRecord::default).merge(r);
        }
        out
    }
}

/// A source whose counts come from `inner` (the Kubernetes API, say) while the scaler's `/explain` is read on every
/// observation too, for the trigger readings the signal phase needs (the counts alone do not say when a trigger
/// crossed its target). An `/explain` failure does not fail the observation; it is noted as a missing input.
pub struct SignalTap {
    inner: Arc<dyn ReplicaSource>,
    explain: Arc<ExplainSource>,
    failure: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for SignalTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalTap")
            .field("inner", &self.inner.name())
            .field("explain", &self.explain.name())
            .finish()
    }
}

impl SignalTap {
    pub fn new(inner: Arc<dyn ReplicaSource>, explain: Arc<ExplainSource>) -> SignalTap {
        SignalTap {
            inner,
            explain,
            failure: std::sync::Mutex::new(None),
        }
    }

    async fn observe_now(&self) -> Result<ReplicaSnapshot, MonitorError> {
        let snap = self.inner.observe().await?;
        // When the chain fell through to the scaler itself, that read already recorded the signals.
        if snap.source != "explain" {
            let result = self.explain.observe().await;
            *self.failure.lock().expect("tap lock") = result.err().map(|e| e.to_string());
        }
        Ok(snap)
    }
}

impl ReplicaSource for SignalTap {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(self.observe_now())
    }
    fn name(&self) -> String {
        format!("{} (signals: {})", self.inner.name(), self.explain.name())
    }
    fn record(&self) -> Option<ScalingRecord> {
        let mut out = self.inner.record().unwrap_or_default();
        if let Some(r) = self.explain.record() {
            out.merge(r);
        }
        if let Some(why) = self.failure.lock().expect("tap lock").clone() {
            out.missing.entry("signals".into()).or_insert(why);
        }
        Some(out)
    }
}
