//! The trigger registry: every trigger KEDA asks about is remembered with its source (parsed once per distinct
//! request), each distinct source gets one poller (`crate::poller`), idle triggers are forgotten, and every RPC is
//! answered from the cached values with a staleness bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::client::Clients;
use crate::config::Config;
use crate::entry::{Source, TriggerEntry, TriggerKey, lock};
use crate::metrics::Metrics;
use crate::poller::Poller;
use crate::trigger::{SourceSpec, TriggerError, TriggerSpec};

/// Why an RPC could not be answered; each maps to one gRPC code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error("invalid trigger metadata: {0}")]
    InvalidMetadata(#[from] TriggerError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Exhausted(String),
}

#[derive(Default)]
struct State {
    triggers: HashMap<TriggerKey, Arc<TriggerEntry>>,
    sources: HashMap<String, Arc<Source>>,
    /// Requests already resolved, by a hash of (name, namespace, metadata): KEDA sends the same metadata on every call,
    /// so parsing and validating it once is enough. Verified against the stored request on every hit.
    memo: HashMap<u64, Vec<Memo>>,
}

struct Memo {
    name: String,
    namespace: String,
    metadata: HashMap<String, String>,
    entry: Arc<TriggerEntry>,
}

/// Order-independent hash of an RPC's ScaledObjectRef.
fn request_hash(name: &str, namespace: &str, metadata: &HashMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut pairs: Vec<(&String, &String)> = metadata.iter().collect();
    pairs.sort_unstable();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (name, namespace, pairs).hash(&mut hasher);
    hasher.finish()
}

/// All triggers and sources of one scaler.
pub struct Registry {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    poller: Arc<Poller>,
    shutdown: CancellationToken,
    state: Mutex<State>,
}

impl Registry {
    /// A registry whose pollers use `clients` (see `crate::client`).
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        clients: Clients,
        shutdown: CancellationToken,
    ) -> Arc<Registry> {
        let poller = Arc::new(Poller {
            source_timeout: config.source_timeout,
            deactivate_after_polls: config.deactivate_after_polls,
            metrics: metrics.clone(),
            clients,
            shutdown: shutdown.clone(),
        });
        Arc::new(Registry {
            config,
            metrics,
            poller,
            shutdown,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Finds or registers the trigger an RPC is about. Updates the stored spec when KEDA sends changed metadata (e.g.
    /// a new target) and starts the source's poller when it is new.
    pub fn resolve(
        self: &Arc<Self>,
        name: &str,
        namespace: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Arc<TriggerEntry>, LookupError> {
        if name.is_empty() {
            return Err(LookupError::InvalidRequest(
                "scaledObjectRef.name is empty; KEDA always sends the ScaledObject's name".into(),
            ));
        }
        let hash = request_hash(name, namespace, metadata);
        {
            let state = lock(&self.state);
            let hit = state.memo.get(&hash).and_then(|memos| {
                memos
                    .iter()
                    .find(|m| m.name == name && m.namespace == namespace && m.metadata == *metadata)
            });
            if let Some(memo) = hit
                && state
                    .triggers
                    .get(&memo.entry.key)
                    .is_some_and(|live| Arc::ptr_eq(live, &memo.entry))
            {
                memo.entry.touch();
                return Ok(memo.entry.clone());
            }
        }
        let entry = self.resolve_uncached(name, namespace, metadata)?;
        let mut state = lock(&self.state);
        if state.memo.len() >= self.config.max_triggers.saturating_mul(2) {
            state.memo.clear();
        }
        let memos = state.memo.entry(hash).or_default();
        memos.retain(|m| !(m.name == name && m.namespace == namespace && m.metadata == *metadata));
        memos.push(Memo {
            name: name.to_string(),
            namespace: namespace.to_string(),
            metadata: metadata.clone(),
            entry: entry.clone(),
        });
        Ok(entry)
    }

    fn resolve_uncached(
        self: &Arc<Self>,
        name: &str,
        namespace: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Arc<TriggerEntry>, LookupError> {
        let mut spec = TriggerSpec::from_metadata(metadata)?;
        if spec.source == SourceSpec::DefaultPrometheus {
            match &self.config.prometheus_url {
                Some(url) => {
                    spec.source = SourceSpec::Prometheus {
                        url: url.trim_end_matches('/').to_string(),
                    }
                }
                None => {
                    return Err(TriggerError::Missing {
                        key: "serverAddress".into(),
                        hint: "no source: give `serverAddress` (Prometheus URL) or `targets` (pods to scrape), \
                               or start the scaler with --prometheus-url"
                            .into(),
                    }
                    .into());
                }
            }
        }
        let key = TriggerKey {
            scaled_object: format!("{namespace}/{name}"),
            metric_name: spec.metric_name.clone(),
        };
        let source_id = Source::id_for(&spec);
        let mut state = lock(&self.state);
        if let Some(entry) = state.triggers.get(&key).cloned() {
            if entry.source.id == source_id {
                entry.touch();
                let target = spec.target;
                if entry.update_spec(&spec) {
                    for memos in state.memo.values_mut() {
                        memos.retain(|m| !Arc::ptr_eq(&m.entry, &entry));
                    }
                    self.metrics
                        .metric_target
                        .with_label_values(&[&key.scaled_object, &key.metric_name])
                        .set(target);
                }
                return Ok(entry);
            }
            // Same explicit metricName, different source: the trigger was redefined.
            state.triggers.remove(&key);
        }
        if state.triggers.len() >= self.config.max_triggers {
            return Err(LookupError::Exhausted(format!(
                "the scaler already tracks {} triggers (--max-triggers)",
                self.config.max_triggers
            )));
        }
        let source = match state.sources.get(&source_id) {
            Some(source) => source.clone(),
            None => {
                let interval = match spec.source {
                    SourceSpec::Direct { .. } => self.config.direct_interval(),
                    SourceSpec::Kafka { .. } => self.config.kafka_interval(),
                    _ => self.config.prometheus_interval(),
                };
                let source = Arc::new(Source::new(
                    source_id.clone(),
                    spec.source.clone(),
                    spec.unsafe_ssl,
                    interval,
                    self.config.staleness_for(interval),
                ));
                state.sources.insert(source_id, source.clone());
                // The poller asks the registry which triggers are alive through a closure, so `poller` never depends
                // on this module. A weak reference lets a dropped registry stop its pollers.
                let registry = Arc::downgrade(self);
                tokio::spawn(self.poller.clone().run(source.clone(), move |source| {
                    registry.upgrade()?.live_triggers(source)
                }));
                source
            }
        };
        self.metrics
            .metric_target
            .with_label_values(&[&key.scaled_object, &key.metric_name])
            .set(spec.target);
        let entry = Arc::new(TriggerEntry::new(key.clone(), source, spec));
        state.triggers.insert(key, entry.clone());
        Ok(entry)
    }

    /// The trigger's current value and debounced activation, from the cache. Waits (bounded) for the first value of a
    /// new trigger; answers Unavailable when the value is older than the staleness bound, naming the cause.
    pub async fn current(&self, entry: &TriggerEntry) -> Result<(f64, bool), LookupError> {
        let source = &entry.source;
        let first_value_wait =
            (source.interval * 2 + self.config.source_timeout).min(Duration::from_secs(10));
        let deadline = tokio::time::Instant::now() + first_value_wait;
        let mut polls = source.subscribe_polls();
        loop {
            polls.mark_unchanged();
            let reading = entry.reading();
            let age = match reading.fresh(Instant::now(), source.max_staleness) {
                Ok(answer) => return Ok(answer),
                Err(age) => age,
            };
            if let Some(age) = age {
                let stats = source.stats();
                return Err(LookupError::Unavailable(format!(
                    "the cached value of {} is {:.1}s old (max staleness {:.1}s); source {} is failing: {}",
                    entry.key.metric_name,
                    age.as_secs_f64(),
                    source.max_staleness.as_secs_f64(),
                    source.id,
                    reading
                        .error
                        .or(stats.last_error)
                        .unwrap_or_else(|| format!(
                            "no poll has refreshed it ({} polls so far, the last {} ago)",
                            stats.polls,
                            stats
                                .last_poll_at
                                .map(|at| format!("{:.1}s", at.elapsed().as_secs_f64()))
                                .unwrap_or_else(|| "never".into())
                        ))
                )));
            }
            if let Some(error) = reading.error {
                return Err(LookupError::Unavailable(format!(
                    "no value yet for {}: source {} failed: {error}",
                    entry.key.metric_name, source.id
                )));
            }
            let waited = tokio::time::timeout_at(deadline, polls.changed()).await;
            if waited.is_err() || self.shutdown.is_cancelled() {
                return Err(LookupError::Unavailable(format!(
                    "no value yet for {} from {}: {}",
                    entry.key.metric_name,
                    source.id,
                    reading
                        .pending
                        .unwrap_or_else(|| "waiting for the first poll".into())
                )));
            }
        }
    }

    /// All triggers, sorted by key.
    pub fn triggers(&self) -> Vec<Arc<TriggerEntry>> {
        let state = lock(&self.state);
        let mut entries: Vec<_> = state.triggers.values().cloned().collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    /// All sources, sorted by id.
    pub fn sources(&self) -> Vec<Arc<Source>> {
        let state = lock(&self.state);
        let mut sources: Vec<_> = state.sources.values().cloned().collect();
        sources.sort_by(|a, b| a.id.cmp(&b.id));
        sources
    }

    /// Refreshes the gauges that depend on time or on several triggers (age, per-ScaledObject activity).
    pub fn refresh_gauges(&self) {
        let mut active: HashMap<String, bool> = HashMap::new();
        for entry in self.triggers() {
            let reading = entry.reading();
            let labels = [
                entry.key.scaled_object.as_str(),
                entry.key.metric_name.as_str(),
            ];
            if let Some(at) = reading.value_at {
                self.metrics
                    .metric_age
                    .with_label_values(&labels)
                    .set(at.elapsed().as_secs_f64());
            }
            let any = active.entry(entry.key.scaled_object.clone()).or_default();
            *any |= reading.active.unwrap_or(false);
        }
        for (scaled_object, is_active) in active {
            self.metrics
                .active
                .with_label_values(&[&scaled_object])
                .set(i64::from(is_active));
        }
    }

    /// The triggers of a source, after forgetting idle ones. None when the source has none left: it is then removed
    /// (under the same lock as registration, so no trigger can join a source whose poller is exiting).
    fn live_triggers(&self, source: &Arc<Source>) -> Option<Vec<Arc<TriggerEntry>>> {
        let mut state = lock(&self.state);
        let idle = self.config.trigger_idle_timeout;
        let mut expired = Vec::new();
        state.triggers.retain(|key, entry| {
            let keep = !Arc::ptr_eq(&entry.source, source) || !entry.is_idle(idle);
            if !keep {
                expired.push(key.clone());
            }
            keep
        });
        if !expired.is_empty() {
            let state = &mut *state;
            let triggers = &state.triggers;
            state.memo.retain(|_, memos| {
                memos.retain(|m| {
                    triggers
                        .get(&m.entry.key)
                        .is_some_and(|live| Arc::ptr_eq(live, &m.entry))
                });
                !memos.is_empty()
            });
        }
        for key in &expired {
            let labels = [key.scaled_object.as_str(), key.metric_name.as_str()];
            let _ = self.metrics.metric_value.remove_label_values(&labels);
            let _ = self.metrics.metric_target.remove_label_values(&labels);
            let _ = self.metrics.metric_age.remove_label_values(&labels);
            if !state
                .triggers
                .keys()
                .any(|k| k.scaled_object == key.scaled_object)
            {
                let _ = self
                    .metrics
                    .active
                    .remove_label_values(&[&key.scaled_object]);
            }
            tracing::info!(scaled_object = %key.scaled_object, trigger = %key.metric_name, "forgot idle trigger");
        }
        let live: Vec<_> = state
            .triggers
            .values()
            .filter(|entry| Arc::ptr_eq(&entry.source, source))
            .cloned()
            .collect();
        if live.is_empty() {
            state.sources.remove(&source.id);
            return None;
        }
        Some(live)
    }
}
