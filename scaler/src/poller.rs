//! The source pollers: one task per distinct source polls it once per interval (a Prometheus query per distinct PromQL,
//! or one scrape per pod), however many ScaledObjects and RPCs read it, and writes each trigger's value or failure
//! into the registry's entries. The registry decides which triggers are still alive; the poller never looks inside it.
//! A Kafka source is read once per interval too (one client per source, `crate::kafka`), and each of its triggers
//! applies its own KEDA rules to the same offsets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::client::Clients;
use crate::direct::{Evaluation, History};
use crate::entry::{Source, TriggerEntry, TriggerKey};
use crate::kafka::{self, LagReader, PreviousOffsets};
use crate::metrics::Metrics;
use crate::prom::{self, QueryValue};
use crate::reading::Observed;
use crate::scrape;
use crate::trigger::{DirectTargets, SourceSpec, TriggerKind, TriggerSpec};

/// What every poller shares.
pub struct Poller {
    /// Time limit of one request (and of a DNS lookup).
    pub source_timeout: Duration,
    /// Hysteresis of activation (`--deactivate-after-polls`).
    pub deactivate_after_polls: u32,
    pub metrics: Arc<Metrics>,
    pub clients: Clients,
    pub shutdown: CancellationToken,
}

impl Poller {
    /// The poller of one source: one poll per interval, stopped at shutdown or when no trigger uses the source.
    pub async fn run(
        self: Arc<Self>,
        source: Arc<Source>,
        live_triggers: impl Fn(&Arc<Source>) -> Option<Vec<Arc<TriggerEntry>>>,
    ) {
        let mut ticker = tokio::time::interval(source.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut history = History::default();
        let mut kafka_state = KafkaState::default();
        tracing::info!(source = %source.id, interval = ?source.interval, "source poller started");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.shutdown.cancelled() => break,
            }
            let Some(triggers) = live_triggers(&source) else {
                break;
            };
            let started = Instant::now();
            // Every request inside a poll has its own timeout; this outer bound guarantees the poller always moves on
            // (and says so) even if something below misbehaves.
            let poll_bound = self.source_timeout * 2 + Duration::from_millis(500);
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
                    SourceSpec::Kafka {
                        bootstrap_servers,
                        consumer_group,
                        topic,
                    } => {
                        self.poll_kafka(
                            &source,
                            (bootstrap_servers, consumer_group, topic.as_deref()),
                            &triggers,
                            &mut kafka_state,
                        )
                        .await
                    }
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
            source.update_stats(|stats| {
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
            });
            if let Err(error) = &outcome {
                self.metrics
                    .source_errors
                    .with_label_values(&[&source.id])
                    .inc();
                tracing::warn!(source = %source.id, %error, "source poll failed");
            }
            source.poll_finished();
        }
        // No trigger left (or shutdown): the Kafka series of this source go.
        let keys: Vec<TriggerKey> = kafka_state.series.keys().cloned().collect();
        for key in keys {
            self.remove_partition_lags(&mut kafka_state, &key);
        }
        tracing::info!(source = %source.id, "source poller stopped");
    }

    async fn poll_direct(
        &self,
        source: &Source,
        targets: &DirectTargets,
        triggers: &[Arc<TriggerEntry>],
        history: &mut History,
    ) -> Result<(), String> {
        let polled_at = Instant::now();
        let pods = match tokio::time::timeout(self.source_timeout, scrape::resolve(targets)).await {
            Ok(Ok(pods)) => pods,
            Ok(Err(error)) => return self.fail_all(triggers, error),
            Err(_) => return self.fail_all(triggers, format!("resolving {targets} timed out")),
        };
        source.update_stats(|stats| stats.requests += pods.len() as u64);
        let client = self.clients.for_source(source.unsafe_ssl);
        let scrapes = join_all(pods.iter().map(|(_, url)| scrape::scrape(client, url))).await;
        let mut scraped = Vec::new();
        let mut failures = Vec::new();
        for ((instance, _), result) in pods.iter().zip(scrapes) {
            match result {
                Ok(samples) => scraped.push((instance.clone(), samples)),
                Err(error) => failures.push(error),
            }
        }
        source.update_stats(|stats| stats.pods = Some(scraped.len()));
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
                        Observed {
                            value,
                            at: polled_at,
                            wall,
                            note,
                            replicas,
                            series: Some(series),
                            activation_value: None,
                            kafka: None,
                        },
                    );
                }
                Evaluation::Pending(why) => entry.record_pending(why, replicas),
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
        source.update_stats(|stats| stats.requests += queries.len() as u64);
        let client = self.clients.for_source(source.unsafe_ssl);
        let answers = join_all(queries.iter().map(|q| prom::query(client, url, q))).await;
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
                Ok(QueryValue::Number(value)) => self.apply_value(
                    entry,
                    Observed {
                        value,
                        at: polled_at,
                        wall,
                        note: None,
                        replicas,
                        series: None,
                        activation_value: None,
                        kafka: None,
                    },
                ),
                Ok(QueryValue::Empty) if spec.ignore_null_values => {
                    let note = match spec.kind {
                        TriggerKind::Latency { .. } => {
                            "no request completed in the window: latency reported as 0"
                        }
                        _ => "the query returned no data: reported as 0 (ignoreNullValues is true)",
                    };
                    self.apply_value(
                        entry,
                        Observed {
                            value: 0.0,
                            at: polled_at,
                            wall,
                            note: Some(note.into()),
                            replicas,
                            series: None,
                            activation_value: None,
                            kafka: None,
                        },
                    )
                }
                Ok(QueryValue::Empty) => {
                    let error =
                        "the query returned no data and ignoreNullValues is false".to_string();
                    first_error.get_or_insert(error.clone());
                    entry.record_error(error);
                }
                Err(error) => {
                    first_error.get_or_insert(error.clone());
                    entry.record_error(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// One read of the group's offsets (blocking librdkafka calls on the blocking pool, bounded by the source timeout),
    /// then every trigger's value from them with its own rules and its own memory of the previous poll.
    async fn poll_kafka(
        &self,
        source: &Source,
        (bootstrap_servers, group, topic): (&str, &str, Option<&str>),
        triggers: &[Arc<TriggerEntry>],
        state: &mut KafkaState,
    ) -> Result<(), String> {
        let polled_at = Instant::now();
        let reader = match &state.reader {
            Some(reader) => reader.clone(),
            None => match LagReader::new(bootstrap_servers, group, topic, self.source_timeout) {
                Ok(reader) => state.reader.insert(Arc::new(reader)).clone(),
                Err(error) => return self.fail_all(triggers, error),
            },
        };
        let timeout = self.source_timeout;
        let read = match tokio::task::spawn_blocking(move || reader.read(timeout)).await {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => return self.fail_all(triggers, error),
            Err(error) => {
                return self.fail_all(triggers, format!("the offset read failed: {error}"));
            }
        };
        source.update_stats(|stats| stats.requests += read.requests);
        let wall = SystemTime::now();
        let mut first_error = None;
        for entry in triggers {
            let spec = entry.spec();
            let TriggerKind::Kafka(rules) = &spec.kind else {
                entry.record_error("not a kafka trigger".into());
                continue;
            };
            let previous = state.previous.entry(entry.key.clone()).or_default();
            match kafka::evaluate(rules, &read.offsets, previous) {
                Ok(report) => {
                    self.publish_partition_lags(state, &entry.key, &report);
                    self.apply_value(
                        entry,
                        Observed {
                            value: report.value as f64,
                            at: polled_at,
                            wall,
                            note: None,
                            replicas: None,
                            series: None,
                            activation_value: Some(report.activation_value() as f64),
                            kafka: Some(Arc::new(report)),
                        },
                    )
                }
                Err(error) => {
                    first_error.get_or_insert(error.clone());
                    entry.record_error(error);
                }
            }
        }
        // A forgotten trigger's memory and series go with it.
        state
            .previous
            .retain(|key, _| triggers.iter().any(|t| t.key == *key));
        let gone: Vec<TriggerKey> = state
            .series
            .keys()
            .filter(|key| !triggers.iter().any(|t| t.key == **key))
            .cloned()
            .collect();
        for key in gone {
            self.remove_partition_lags(state, &key);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Sets `scaler_kafka_partition_lag` for the report's partitions and removes the trigger's series of partitions
    /// that are no longer counted.
    fn publish_partition_lags(
        &self,
        state: &mut KafkaState,
        key: &TriggerKey,
        report: &kafka::LagReport,
    ) {
        let current: HashSet<(String, i32)> = report
            .partitions
            .iter()
            .map(|p| (p.offsets.topic.clone(), p.offsets.partition))
            .collect();
        for p in &report.partitions {
            self.metrics
                .kafka_partition_lag
                .with_label_values(&[
                    key.scaled_object.as_str(),
                    key.metric_name.as_str(),
                    p.offsets.topic.as_str(),
                    &p.offsets.partition.to_string(),
                ])
                .set(p.lag);
        }
        let before = state.series.insert(key.clone(), current.clone());
        for (topic, partition) in before.unwrap_or_default().difference(&current) {
            let _ = self.metrics.kafka_partition_lag.remove_label_values(&[
                key.scaled_object.as_str(),
                key.metric_name.as_str(),
                topic.as_str(),
                &partition.to_string(),
            ]);
        }
    }

    fn remove_partition_lags(&self, state: &mut KafkaState, key: &TriggerKey) {
        for (topic, partition) in state.series.remove(key).unwrap_or_default() {
            let _ = self.metrics.kafka_partition_lag.remove_label_values(&[
                key.scaled_object.as_str(),
                key.metric_name.as_str(),
                topic.as_str(),
                &partition.to_string(),
            ]);
        }
    }

    fn fail_all(&self, triggers: &[Arc<TriggerEntry>], error: String) -> Result<(), String> {
        for entry in triggers {
            entry.record_error(error.clone());
        }
        Err(error)
    }

    fn apply_value(&self, entry: &TriggerEntry, observed: Observed) {
        let value = observed.value;
        entry.record_value(observed, self.deactivate_after_polls);
        self.metrics
            .metric_value
            .with_label_values(&[&entry.key.scaled_object, &entry.key.metric_name])
            .set(value);
    }
}

/// What a Kafka source's poller keeps between polls: its client, and each trigger's committed offsets of the previous
/// poll (`excludePersistentLag`; per trigger, as KEDA keeps them per scaler).
#[derive(Default)]
struct KafkaState {
    reader: Option<Arc<LagReader>>,
    previous: HashMap<TriggerKey, PreviousOffsets>,
    /// The `scaler_kafka_partition_lag` series each trigger exports, to remove those that went away.
    series: HashMap<TriggerKey, HashSet<(String, i32)>>,
}
