//! The direct source's arithmetic: keeps a short history of every pod's scrapes (`crate::scrape` reads them) and
//! computes rates, quantiles and sums from consecutive scrapes itself, handling counter resets (process restarts) and
//! pods coming and going.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use contract::metrics::consumer::{
    ALLOCATED_BYTES_TOTAL, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL,
    PROCESS_START_TIME_SECONDS,
};
use contract::metrics::labels;

use crate::exposition::Sample;
use crate::quantile::{histogram_quantile, parse_le};
use crate::trigger::promql::{BACKLOG_SERIES, bucket_series};
use crate::trigger::{TriggerKind, TriggerSpec};

/// One pod's scrape at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    /// The consumer's process start time: a change means the process restarted, so every counter reset.
    pub start_time: Option<f64>,
    pub series: HashMap<String, Sample>,
}

impl Snapshot {
    /// Builds a snapshot; every sample gets an `instance` label naming the pod, so `selector` can scope to pods.
    pub fn new(at: Instant, instance: &str, samples: Vec<Sample>) -> Snapshot {
        let mut start_time = None;
        let mut series = HashMap::with_capacity(samples.len());
        for mut sample in samples {
            if sample.name == PROCESS_START_TIME_SECONDS.name {
                start_time = Some(sample.value);
                continue;
            }
            sample.labels.retain(|(name, _)| name != "instance");
            sample
                .labels
                .push(("instance".to_string(), instance.to_string()));
            sample.labels.sort();
            series.insert(sample.series_key(), sample);
        }
        Snapshot {
            at,
            start_time,
            series,
        }
    }
}

/// What a trigger evaluates to on the current history.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    Value {
        value: f64,
        /// Pods that contributed.
        pods: usize,
        /// Series that matched the trigger's filter.
        series: usize,
        note: Option<String>,
    },
    /// Not computable yet (e.g. a rate needs two scrapes); not an error.
    Pending(String),
}

/// Scrape history of all pods of one direct source.
#[derive(Debug, Default)]
pub struct History {
    pods: HashMap<String, VecDeque<Snapshot>>,
    /// Pods scraped successfully in the latest poll; only they count.
    current: HashSet<String>,
    latest: Option<Instant>,
}

impl History {
    /// Records one poll: the pods scraped successfully (others keep their history while still resolvable), drops pods
    /// that are gone, and prunes snapshots older than `retention` (keeping one older snapshot as a rate base).
    pub fn record_poll(
        &mut self,
        at: Instant,
        scraped: Vec<(String, Vec<Sample>)>,
        resolvable: &HashSet<String>,
        retention: Duration,
    ) {
        self.current.clear();
        for (instance, samples) in scraped {
            let snapshot = Snapshot::new(at, &instance, samples);
            self.pods
                .entry(instance.clone())
                .or_default()
                .push_back(snapshot);
            self.current.insert(instance);
        }
        self.pods
            .retain(|instance, _| resolvable.contains(instance));
        let horizon = at.checked_sub(retention);
        for snapshots in self.pods.values_mut() {
            if let Some(horizon) = horizon {
                // Keep the newest snapshot at or before the horizon: it is the base of a full-window rate.
                while snapshots.len() >= 2 && snapshots[1].at <= horizon {
                    snapshots.pop_front();
                }
            }
        }
        self.pods.retain(|_, snapshots| !snapshots.is_empty());
        self.latest = Some(at);
    }

    /// Pods counted in the latest poll.
    pub fn current_pods(&self) -> usize {
        self.current.len()
    }

    /// Evaluates a trigger on the history as of the latest poll.
    pub fn evaluate(&self, spec: &TriggerSpec) -> Evaluation {
        let Some(now) = self.latest else {
            return Evaluation::Pending("no scrape yet".into());
        };
        if self.current.is_empty() {
            return Evaluation::Pending("no pod was scraped in the latest poll".into());
        }
        match &spec.kind {
            TriggerKind::RequestRate => {
                self.counter_rate(now, spec, HTTP_REQUESTS_TOTAL.name, |labels| {
                    spec.request_series_matches(labels)
                })
            }
            TriggerKind::AllocatorPressure => {
                self.counter_rate(now, spec, ALLOCATED_BYTES_TOTAL.name, |labels| {
                    spec.selector_matches(labels)
                })
            }
            TriggerKind::Latency { quantile } => self.latency(now, spec, *quantile),
            TriggerKind::Backlog => self.backlog(spec),
            TriggerKind::Query { .. } => {
                Evaluation::Pending("the query trigger needs a Prometheus source".into())
            }
            // A kafka trigger has its own source; metadata parsing never pairs it with `targets`.
            TriggerKind::Kafka(_) => {
                Evaluation::Pending("the kafka trigger reads a Kafka source, not pods".into())
            }
        }
    }

    /// The window of snapshots of one current pod: the base (newest at or before `now - window`, else the oldest) and
    /// everything after it. None if the pod has fewer than two.
    fn window_of(&self, instance: &str, now: Instant, window: Duration) -> Option<Vec<&Snapshot>> {
        let snapshots = self.pods.get(instance)?;
        if snapshots.len() < 2 {
            return None;
        }
        let start = now.checked_sub(window);
        let base = match start {
            Some(start) => snapshots.iter().rposition(|s| s.at <= start).unwrap_or(0),
            None => 0,
        };
        let slice: Vec<&Snapshot> = snapshots.iter().skip(base).collect();
        (slice.len() >= 2).then_some(slice)
    }

    /// Per-series increase over consecutive snapshots: a series absent from an earlier scrape of the same process
    /// started at 0 (counters are created on first use), a decrease or a new process start time is a reset.
    fn increases<'a>(
        snapshots: &[&'a Snapshot],
        name: &str,
        matches: &impl Fn(&[(String, String)]) -> bool,
    ) -> HashMap<&'a str, (&'a Sample, f64)> {
        let mut increases: HashMap<&'a str, (&'a Sample, f64)> = HashMap::new();
        for pair in snapshots.windows(2) {
            let (previous, current) = (pair[0], pair[1]);
            let restarted = previous.start_time.is_some()
                && current.start_time.is_some()
                && previous.start_time != current.start_time;
            for (key, sample) in &current.series {
                if sample.name != name || !matches(&sample.labels) {
                    continue;
                }
                let before = if restarted {
                    None
                } else {
                    previous.series.get(key).map(|s| s.value)
                };
                let delta = match before {
                    Some(before) if sample.value >= before => sample.value - before,
                    // Reset: the counter restarted from 0 and reached its current value.
                    Some(_) => sample.value,
                    None => sample.value,
                };
                let entry = increases.entry(key.as_str()).or_insert((sample, 0.0));
                if delta.is_finite() {
                    entry.1 += delta;
                }
            }
        }
        increases
    }

    fn counter_rate(
        &self,
        now: Instant,
        spec: &TriggerSpec,
        name: &str,
        matches: impl Fn(&[(String, String)]) -> bool,
    ) -> Evaluation {
        let mut total = 0.0;
        let mut pods = 0;
        let mut series = 0;
        for instance in &self.current {
            let Some(snapshots) = self.window_of(instance, now, spec.window) else {
                continue;
            };
            let elapsed = snapshots[snapshots.len() - 1]
                .at
                .duration_since(snapshots[0].at)
                .as_secs_f64();
            if elapsed <= 0.0 {
                continue;
            }
            let increases = Self::increases(&snapshots, name, &matches);
            series += increases.len();
            total += increases.values().map(|(_, inc)| inc).sum::<f64>() / elapsed;
            pods += 1;
        }
        if pods == 0 {
            return Evaluation::Pending("warming up: a rate needs two scrapes of a pod".into());
        }
        Evaluation::Value {
            value: total,
            pods,
            series,
            note: (series == 0).then(|| format!("no {name} series matched")),
        }
    }

    fn latency(&self, now: Instant, spec: &TriggerSpec, quantile: f64) -> Evaluation {
        let mut buckets: HashMap<String, (f64, f64)> = HashMap::new();
        let mut pods = 0;
        let mut series = 0;
        let matches = |labels: &[(String, String)]| spec.request_series_matches(labels);
        for instance in &self.current {
            let Some(snapshots) = self.window_of(instance, now, spec.window) else {
                continue;
            };
            pods += 1;
            let increases = Self::increases(
                &snapshots,
                &bucket_series(&HTTP_REQUEST_DURATION_SECONDS),
                &matches,
            );
            series += increases.len();
            for (sample, increase) in increases.values() {
                let le_text = sample.label(labels::LE);
                let Some(le) = parse_le(le_text) else {
                    continue;
                };
                let entry = buckets.entry(le_text.to_string()).or_insert((le, 0.0));
                entry.1 += increase;
            }
        }
        if pods == 0 {
            return Evaluation::Pending("warming up: a quantile needs two scrapes of a pod".into());
        }
        let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        match histogram_quantile(quantile, &sorted) {
            Some(value) => Evaluation::Value {
                value,
                pods,
                series,
                note: None,
            },
            None => Evaluation::Value {
                value: 0.0,
                pods,
                series,
                note: Some("no request completed in the window: latency reported as 0".into()),
            },
        }
    }

    fn backlog(&self, spec: &TriggerSpec) -> Evaluation {
        let mut total = 0.0;
        let mut series = 0;
        for instance in &self.current {
            let Some(latest) = self.pods.get(instance).and_then(|s| s.back()) else {
                continue;
            };
            for sample in latest.series.values() {
                let wanted = BACKLOG_SERIES.iter().any(|m| m.name == sample.name);
                if wanted && spec.selector_matches(&sample.labels) && sample.value.is_finite() {
                    total += sample.value;
                    series += 1;
                }
            }
        }
        Evaluation::Value {
            value: total,
            pods: self.current.len(),
            series,
            note: (series == 0).then(|| {
                let names: Vec<&str> = BACKLOG_SERIES.iter().map(|m| m.name).collect();
                format!("no {} series matched", names.join("/"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;
    use contract::metrics::consumer::{JOBS_QUEUED, JOBS_RUNNING};

    const REQUESTS: &str = HTTP_REQUESTS_TOTAL.name;
    const START: &str = PROCESS_START_TIME_SECONDS.name;
    use std::collections::HashMap as Map;

    fn spec(pairs: &[(&str, &str)]) -> TriggerSpec {
        let mut meta: Map<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        meta.insert("targets".into(), "http://127.0.0.1:1".into());
        TriggerSpec::from_metadata(&meta).unwrap()
    }

    fn page(requests: f64, probe: f64, start: f64) -> Vec<Sample> {
        parse(
            &format!(
                "{REQUESTS}{{method=\"GET\",route=\"/load/cpu\",status=\"200\"}} {requests}\n\
                 {REQUESTS}{{method=\"GET\",route=\"/metrics\",status=\"200\"}} {probe}\n\
                 {START} {start}\n\
                 {} 3\n{} 2\n",
                JOBS_QUEUED.name, JOBS_RUNNING.name
            ),
            |_| true,
        )
        .unwrap()
    }

    fn resolvable(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rate_from_consecutive_scrapes_sums_pods_and_skips_probes() {
        let t0 = Instant::now();
        let mut history = History::default();
        let pods = resolvable(&["a", "b"]);
        let rate = spec(&[("trigger", "request_rate"), ("window", "10s")]);
        history.record_poll(
            t0,
            vec![("a".into(), page(100.0, 5.0, 1.0))],
            &pods,
            Duration::from_secs(10),
        );
        assert!(matches!(history.evaluate(&rate), Evaluation::Pending(_)));
        history.record_poll(
            t0 + Duration::from_secs(1),
            vec![
                ("a".into(), page(110.0, 500.0, 1.0)),
                ("b".into(), page(7.0, 1.0, 1.0)),
            ],
            &pods,
            Duration::from_secs(10),
        );
        // Pod b has one scrape only: no rate from it yet.
        assert_eq!(
            history.evaluate(&rate),
            Evaluation::Value {
                value: 10.0,
                pods: 1,
                series: 1,
                note: None
            }
        );
        history.record_poll(
            t0 + Duration::from_secs(2),
            vec![
                ("a".into(), page(130.0, 900.0, 1.0)),
                ("b".into(), page(17.0, 2.0, 1.0)),
            ],
            &pods,
            Duration::from_secs(10),
        );
        // a: 30 over 2 s; b: 10 over 1 s.
        match history.evaluate(&rate) {
            Evaluation::Value { value, pods, .. } => {
                assert!((value - 25.0).abs() < 1e-9, "{value}");
                assert_eq!(pods, 2);
            }
            other => panic!("{other:?}"),
        }
        let backlog = spec(&[("trigger", "backlog"), ("target", "1")]);
        assert!(
            matches!(history.evaluate(&backlog), Evaluation::Value { value, .. } if value == 10.0)
        );
    }

    #[test]
    fn counter_resets_and_new_series_count_from_zero() {
        let t0 = Instant::now();
        let pods = resolvable(&["a"]);
        let rate = spec(&[("trigger", "request_rate"), ("window", "60s")]);
        let mut history = History::default();
        // First scrape: no /load/cpu series yet (the counter is created on first use).
        let empty = parse(&format!("{START} 1\n"), |_| true).unwrap();
        history.record_poll(
            t0,
            vec![("a".into(), empty)],
            &pods,
            Duration::from_secs(60),
        );
        history.record_poll(
            t0 + Duration::from_secs(1),
            vec![("a".into(), page(40.0, 0.0, 1.0))],
            &pods,
            Duration::from_secs(60),
        );
        assert!(
            matches!(history.evaluate(&rate), Evaluation::Value { value, .. } if value == 40.0)
        );
        // Process restarted (new start time) and already served 5 requests: +5, not -35.
        history.record_poll(
            t0 + Duration::from_secs(2),
            vec![("a".into(), page(5.0, 0.0, 2.0))],
            &pods,
            Duration::from_secs(60),
        );
        assert!(
            matches!(history.evaluate(&rate), Evaluation::Value { value, .. } if value == 22.5)
        );
        // A decrease without start time information is a reset too.
        history.record_poll(
            t0 + Duration::from_secs(4),
            vec![("a".into(), page(3.0, 0.0, 2.0))],
            &pods,
            Duration::from_secs(60),
        );
        assert!(
            matches!(history.evaluate(&rate), Evaluation::Value { value, .. } if value == 12.0)
        );
    }

    #[test]
    fn window_limits_history_and_gone_pods_are_dropped() {
        let t0 = Instant::now();
        let rate = spec(&[("trigger", "request_rate"), ("window", "2s")]);
        let mut history = History::default();
        let both = resolvable(&["a", "b"]);
        for (i, count) in [0.0, 100.0, 100.0, 100.0].iter().enumerate() {
            history.record_poll(
                t0 + Duration::from_secs(i as u64),
                vec![
                    ("a".into(), page(*count, 0.0, 1.0)),
                    ("b".into(), page(0.0, 0.0, 1.0)),
                ],
                &both,
                Duration::from_secs(2),
            );
        }
        // The burst between t0 and t0+1 s is older than the 2 s window.
        assert!(
            matches!(history.evaluate(&rate), Evaluation::Value { value, pods: 2, .. } if value == 0.0)
        );
        history.record_poll(
            t0 + Duration::from_secs(5),
            vec![("a".into(), page(100.0, 0.0, 1.0))],
            &resolvable(&["a"]),
            Duration::from_secs(2),
        );
        assert_eq!(history.current_pods(), 1);
        assert!(!history.pods.contains_key("b"));
        assert!(history.pods["a"].len() <= 3);
    }

    #[test]
    fn latency_from_bucket_increases() {
        let t0 = Instant::now();
        let pods = resolvable(&["a"]);
        let latency = spec(&[
            ("trigger", "latency"),
            ("quantile", "0.5"),
            ("window", "10s"),
        ]);
        let bucket = bucket_series(&HTTP_REQUEST_DURATION_SECONDS);
        let buckets = |fast: f64, slow: f64| {
            parse(
                &format!(
                    "{bucket}{{route=\"/load/cpu\",le=\"0.1\"}} {fast}\n\
                     {bucket}{{route=\"/load/cpu\",le=\"1\"}} {}\n\
                     {bucket}{{route=\"/load/cpu\",le=\"+Inf\"}} {}\n\
                     {bucket}{{route=\"/metrics\",le=\"0.1\"}} 0\n\
                     {bucket}{{route=\"/metrics\",le=\"1\"}} 0\n\
                     {bucket}{{route=\"/metrics\",le=\"+Inf\"}} 1000\n",
                    fast + slow,
                    fast + slow
                ),
                |_| true,
            )
            .unwrap()
        };
        let mut history = History::default();
        history.record_poll(
            t0,
            vec![("a".into(), buckets(1000.0, 0.0))],
            &pods,
            Duration::from_secs(10),
        );
        history.record_poll(
            t0 + Duration::from_secs(1),
            vec![("a".into(), buckets(1000.0, 0.0))],
            &pods,
            Duration::from_secs(10),
        );
        match history.evaluate(&latency) {
            Evaluation::Value { value, note, .. } => {
                assert_eq!(value, 0.0);
                assert!(note.unwrap().contains("no request"));
            }
            other => panic!("{other:?}"),
        }
        // 10 slow requests (0.1 < d <= 1): median interpolates inside (0.1, 1].
        history.record_poll(
            t0 + Duration::from_secs(2),
            vec![("a".into(), buckets(1000.0, 10.0))],
            &pods,
            Duration::from_secs(10),
        );
        match history.evaluate(&latency) {
            Evaluation::Value { value, .. } => assert!((value - 0.55).abs() < 1e-9, "{value}"),
            other => panic!("{other:?}"),
        }
    }
}
