//! The trigger registry and the source pollers: every trigger KEDA asks about is remembered with its source; each
//! distinct source is polled by one task once per interval however many ScaledObjects and RPCs ask, and every RPC is
//! answered from the values cached here (with a staleness bound, hysteresis for activation, and change notifications
//! for the streaming RPCs).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::direct::{self, Evaluation, History};
use crate::metrics::Metrics;
use crate::prom::{self, QueryValue};
use crate::trigger::{MetricType, SourceSpec, TriggerError, TriggerKind, TriggerSpec};

/// Identifies a trigger: the ScaledObject (`namespace/name`) and the trigger's metricName.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TriggerKey {
    pub scaled_object: String,
    pub metric_name: String,
}

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

/// The cached state of one trigger.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Last value read successfully; kept when later polls fail (served until stale).
    pub value: Option<f64>,
    pub value_at: Option<Instant>,
    pub value_wall: Option<SystemTime>,
    /// The latest poll's failure for this trigger; cleared by a success.
    pub error: Option<String>,
    /// Why there is no value yet although nothing failed (e.g. a rate needs two scrapes).
    pub pending: Option<String>,
    /// A remark about the last value (e.g. "no request completed in the window").
    pub note: Option<String>,
    /// Debounced activation state (hysteresis), None before the first value.
    pub active: Option<bool>,
    /// Consecutive polls at or below activationTarget while active.
    pub polls_below: u32,
    /// Pods behind the value, when the source can tell.
    pub replicas: Option<u32>,
    /// Series that matched the trigger's filter (direct source).
    pub series: Option<usize>,
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
    pub fn spec(&self) -> Arc<TriggerSpec> {
        self.spec_tx.borrow().clone()
    }

    pub fn reading(&self) -> Reading {
        lock(&self.reading).clone()
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

    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
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
    pub interval: Duration,
    pub max_staleness: Duration,
    generation: watch::Sender<u64>,
    stats: Mutex<SourceStats>,
}

impl Source {
    pub fn stats(&self) -> SourceStats {
        lock(&self.stats).clone()
    }

    pub fn kind(&self) -> &'static str {
        match self.spec {
            SourceSpec::Direct { .. } => "direct",
            _ => "prometheus",
        }
    }
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
    client: reqwest::Client,
    shutdown: CancellationToken,
    state: Mutex<State>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data stays consistent: every critical
/// section here is a plain field update).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Registry> {
        let client = reqwest::Client::builder()
            .timeout(config.source_timeout)
            .connect_timeout(config.source_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Registry {
            config,
            metrics,
            client,
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
        let source_id = spec.source.id();
        let mut state = lock(&self.state);
        if let Some(entry) = state.triggers.get(&key).cloned() {
            if entry.source.id == source_id {
                entry.touch();
                let target = spec.target;
                let changed = entry.spec_tx.send_if_modified(|current| {
                    if **current != spec {
                        *current = Arc::new(spec.clone());
                        true
                    } else {
                        false
                    }
                });
                if changed {
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
                    _ => self.config.prometheus_interval(),
                };
                let source = Arc::new(Source {
                    id: source_id.clone(),
                    spec: spec.source.clone(),
                    interval,
                    max_staleness: self.config.staleness_for(interval),
                    generation: watch::channel(0).0,
                    stats: Mutex::new(SourceStats::default()),
                });
                state.sources.insert(source_id, source.clone());
                tokio::spawn(self.clone().run_source(source.clone()));
                source
            }
        };
        self.metrics
            .metric_target
            .with_label_values(&[&key.scaled_object, &key.metric_name])
            .set(spec.target);
        let entry = Arc::new(TriggerEntry {
            key: key.clone(),
            source,
            spec_tx: watch::channel(Arc::new(spec)).0,
            active_tx: watch::channel(None).0,
            reading: Mutex::new(Reading::default()),
            last_used: Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        });
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
        let mut generations = source.generation.subscribe();
        loop {
            generations.mark_unchanged();
            let reading = entry.reading();
            if let (Some(value), Some(at)) = (reading.value, reading.value_at) {
                let age = at.elapsed();
                if age <= source.max_staleness {
                    return Ok((value, reading.active.unwrap_or(false)));
                }
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
            let waited = tokio::time::timeout_at(deadline, generations.changed()).await;
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
            let keep = !Arc::ptr_eq(&entry.source, source)
                || entry.streams.load(Ordering::SeqCst) > 0
                || lock(&entry.last_used).elapsed() < idle;
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

    /// The poller of one source: one poll per interval, stopped at shutdown or when no trigger uses the source.
    async fn run_source(self: Arc<Self>, source: Arc<Source>) {
        let mut ticker = tokio::time::interval(source.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut history = History::default();
        tracing::info!(source = %source.id, interval = ?source.interval, "source poller started");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.shutdown.cancelled() => break,
            }
            let Some(triggers) = self.live_triggers(&source) else {
                break;
            };
            let started = Instant::now();
            // Every request inside a poll has its own timeout; this outer bound guarantees the poller always moves on
            // (and says so) even if something below misbehaves.
            let poll_bound = self.config.source_timeout * 2 + Duration::from_millis(500);
            let poll = async {
                match &source.spec {
                    SourceSpec::Direct { targets } => {
                        self.poll_direct(&source, targets, &triggers, &mut history)
                            .await
                    }
                    SourceSpec::Prometheus { url } => {
                        self.poll_prometheus(&source, url, &triggers).await
                    }
                    SourceSpec::DefaultPrometheus => Err("unresolved default source".to_string()),
                }
            };
            let outcome = match tokio::time::timeout(poll_bound, poll).await {
                Ok(outcome) => outcome,
                Err(_) => self.fail_all(
                    &triggers,
                    format!("poll did not finish within {poll_bound:?}"),
                ),
            };
            let elapsed = started.elapsed();
            self.metrics
                .source_polls
                .with_label_values(&[&source.id])
                .inc();
            self.metrics
                .source_poll_duration
                .with_label_values(&[&source.id])
                .observe(elapsed.as_secs_f64());
            {
                let mut stats = lock(&source.stats);
                stats.polls += 1;
                stats.last_poll_at = Some(started);
                stats.last_duration = Some(elapsed);
                match &outcome {
                    Ok(()) => stats.last_error = None,
                    Err(error) => {
                        stats.errors += 1;
                        stats.last_error = Some(error.clone());
                    }
                }
            }
            if let Err(error) = &outcome {
                self.metrics
                    .source_errors
                    .with_label_values(&[&source.id])
                    .inc();
                tracing::warn!(source = %source.id, %error, "source poll failed");
            }
            source.generation.send_modify(|generation| *generation += 1);
        }
        tracing::info!(source = %source.id, "source poller stopped");
    }

    async fn poll_direct(
        &self,
        source: &Source,
        targets: &crate::trigger::DirectTargets,
        triggers: &[Arc<TriggerEntry>],
        history: &mut History,
    ) -> Result<(), String> {
        let polled_at = Instant::now();
        let pods = match tokio::time::timeout(self.config.source_timeout, direct::resolve(targets))
            .await
        {
            Ok(Ok(pods)) => pods,
            Ok(Err(error)) => return self.fail_all(triggers, error),
            Err(_) => return self.fail_all(triggers, format!("resolving {targets} timed out")),
        };
        lock(&source.stats).requests += pods.len() as u64;
        let scrapes = join_all(
            pods.iter()
                .map(|(_, url)| direct::scrape(&self.client, url)),
        )
        .await;
        let mut scraped = Vec::new();
        let mut failures = Vec::new();
        for ((instance, _), result) in pods.iter().zip(scrapes) {
            match result {
                Ok(samples) => scraped.push((instance.clone(), samples)),
                Err(error) => failures.push(error),
            }
        }
        lock(&source.stats).pods = Some(scraped.len());
        if scraped.is_empty() {
            let error = format!(
                "all {} pod(s) failed to scrape: {}",
                pods.len(),
                failures.first().cloned().unwrap_or_default()
            );
            history.record_poll(polled_at, Vec::new(), &HashSet::new(), Duration::ZERO);
            return self.fail_all(triggers, error);
        }
        let retention = triggers
            .iter()
            .map(|t| t.spec().window)
            .max()
            .unwrap_or_default()
            + source.interval;
        let resolvable: HashSet<String> =
            pods.iter().map(|(instance, _)| instance.clone()).collect();
        history.record_poll(polled_at, scraped, &resolvable, retention);
        let partial = (!failures.is_empty()).then(|| {
            format!(
                "{} of {} pod(s) failed to scrape and are not counted: {}",
                failures.len(),
                pods.len(),
                failures[0]
            )
        });
        let wall = SystemTime::now();
        let replicas = u32::try_from(history.current_pods()).ok();
        for entry in triggers {
            let spec = entry.spec();
            match history.evaluate(&spec) {
                Evaluation::Value {
                    value,
                    series,
                    note,
                    ..
                } => {
                    let note = match (note, &partial) {
                        (Some(note), Some(partial)) => Some(format!("{note}; {partial}")),
                        (note, partial) => note.or(partial.clone()),
                    };
                    self.apply_value(
                        entry,
                        &spec,
                        value,
                        polled_at,
                        wall,
                        note,
                        replicas,
                        Some(series),
                    );
                }
                Evaluation::Pending(why) => {
                    let mut reading = lock(&entry.reading);
                    reading.pending = Some(why);
                    reading.error = None;
                    reading.replicas = replicas;
                }
            }
        }
        match partial {
            Some(partial) => Err(partial),
            None => Ok(()),
        }
    }

    async fn poll_prometheus(
        &self,
        source: &Source,
        url: &str,
        triggers: &[Arc<TriggerEntry>],
    ) -> Result<(), String> {
        let polled_at = Instant::now();
        let specs: Vec<Arc<TriggerSpec>> = triggers.iter().map(|t| t.spec()).collect();
        // One request per distinct query, however many triggers share it.
        let mut queries: Vec<String> = Vec::new();
        for spec in &specs {
            queries.push(spec.promql());
            if let Some(replicas) = spec.replicas_promql() {
                queries.push(replicas);
            }
        }
        queries.sort();
        queries.dedup();
        lock(&source.stats).requests += queries.len() as u64;
        let answers = join_all(queries.iter().map(|q| prom::query(&self.client, url, q))).await;
        let results: HashMap<&str, Result<QueryValue, String>> =
            queries.iter().map(String::as_str).zip(answers).collect();
        let wall = SystemTime::now();
        let mut first_error = None;
        for (entry, spec) in triggers.iter().zip(&specs) {
            let replicas = spec
                .replicas_promql()
                .and_then(|q| match results.get(q.as_str()) {
                    Some(Ok(QueryValue::Number(n))) if *n >= 0.0 => Some(*n as u32),
                    _ => None,
                });
            let outcome = results
                .get(spec.promql().as_str())
                .cloned()
                .unwrap_or_else(|| Err("query was not run".into()));
            match outcome {
                Ok(QueryValue::Number(value)) => {
                    self.apply_value(entry, spec, value, polled_at, wall, None, replicas, None)
                }
                Ok(QueryValue::Empty) if spec.ignore_null_values => {
                    let note = match spec.kind {
                        TriggerKind::Latency { .. } => {
                            "no request completed in the window: latency reported as 0"
                        }
                        _ => "the query returned no data: reported as 0 (ignoreNullValues is true)",
                    };
                    self.apply_value(
                        entry,
                        spec,
                        0.0,
                        polled_at,
                        wall,
                        Some(note.into()),
                        replicas,
                        None,
                    )
                }
                Ok(QueryValue::Empty) => {
                    let error =
                        "the query returned no data and ignoreNullValues is false".to_string();
                    first_error.get_or_insert(error.clone());
                    self.record_error(entry, error);
                }
                Err(error) => {
                    first_error.get_or_insert(error.clone());
                    self.record_error(entry, error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn fail_all(&self, triggers: &[Arc<TriggerEntry>], error: String) -> Result<(), String> {
        for entry in triggers {
            self.record_error(entry, error.clone());
        }
        Err(error)
    }

    fn record_error(&self, entry: &TriggerEntry, error: String) {
        let mut reading = lock(&entry.reading);
        reading.error = Some(error);
        reading.pending = None;
    }

    /// Stores a fresh value and advances the activation state: active as soon as the value is above activationTarget;
    /// inactive only after `--deactivate-after-polls` consecutive polls at or below it (hysteresis against flapping).
    #[allow(clippy::too_many_arguments)]
    fn apply_value(
        &self,
        entry: &TriggerEntry,
        spec: &TriggerSpec,
        value: f64,
        at: Instant,
        wall: SystemTime,
        note: Option<String>,
        replicas: Option<u32>,
        series: Option<usize>,
    ) {
        let above = value > spec.activation_target;
        let active = {
            let mut reading = lock(&entry.reading);
            reading.value = Some(value);
            reading.value_at = Some(at);
            reading.value_wall = Some(wall);
            reading.error = None;
            reading.pending = None;
            reading.note = note;
            reading.replicas = replicas;
            reading.series = series;
            let active = match reading.active {
                Some(true) if !above => {
                    reading.polls_below += 1;
                    reading.polls_below < self.config.deactivate_after_polls
                }
                _ => {
                    reading.polls_below = 0;
                    above
                }
            };
            reading.active = Some(active);
            active
        };
        entry.active_tx.send_if_modified(|current| {
            if *current != Some(active) {
                *current = Some(active);
                true
            } else {
                false
            }
        });
        self.metrics
            .metric_value
            .with_label_values(&[&entry.key.scaled_object, &entry.key.metric_name])
            .set(value);
    }
}

/// The replica count the HPA computes from this value (before min/max clamping and behavior), with its 10% tolerance
/// when the current count is known. AverageValue: ceil(value / target). Value: ceil(current × value / target), or
/// ceil(value / target) when the current count is unknown.
pub fn hpa_replicas(
    metric_type: MetricType,
    value: f64,
    target: f64,
    current: Option<u32>,
) -> Option<u64> {
    if !(value.is_finite() && target > 0.0) {
        return None;
    }
    const TOLERANCE: f64 = 0.1;
    let ceil = |x: f64| Some(x.max(0.0).ceil() as u64);
    match (metric_type, current) {
        (MetricType::AverageValue, Some(current)) if current > 0 => {
            let ratio = value / (target * f64::from(current));
            if (ratio - 1.0).abs() <= TOLERANCE {
                Some(u64::from(current))
            } else {
                ceil(value / target)
            }
        }
        (MetricType::Value, Some(current)) if current > 0 => {
            let ratio = value / target;
            if (ratio - 1.0).abs() <= TOLERANCE {
                Some(u64::from(current))
            } else {
                ceil(f64::from(current) * ratio)
            }
        }
        _ => ceil(value / target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_formula_with_and_without_current_replicas() {
        // 42 req/s, target 5 per replica: ceil(8.4) = 9 whatever the current count.
        assert_eq!(
            hpa_replicas(MetricType::AverageValue, 42.0, 5.0, None),
            Some(9)
        );
        assert_eq!(
            hpa_replicas(MetricType::AverageValue, 42.0, 5.0, Some(2)),
            Some(9)
        );
        // Within 10% of target per replica: no change.
        assert_eq!(
            hpa_replicas(MetricType::AverageValue, 20.5, 5.0, Some(4)),
            Some(4)
        );
        // Latency 3 s vs target 2 s with 4 replicas: ceil(4 * 1.5) = 6.
        assert_eq!(hpa_replicas(MetricType::Value, 3.0, 2.0, Some(4)), Some(6));
        assert_eq!(hpa_replicas(MetricType::Value, 3.0, 2.0, None), Some(2));
        assert_eq!(hpa_replicas(MetricType::Value, 2.1, 2.0, Some(3)), Some(3));
        assert_eq!(
            hpa_replicas(MetricType::AverageValue, 0.0, 5.0, Some(3)),
            Some(0)
        );
        assert_eq!(
            hpa_replicas(MetricType::AverageValue, f64::NAN, 5.0, None),
            None
        );
    }
}
