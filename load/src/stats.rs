//! Measurement: request outcomes, HDR latency histograms per endpoint kept in a few lock shards, and the per-interval
//! and whole-run summaries built from them. Only histograms and counters are kept, never a list of samples, so memory
//! stays flat however long a run lasts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::model::Outcome;
use crate::model::ReplicaSnapshot;

/// Highest latency a histogram records (1 hour, in microseconds); larger values are clamped.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Distinct `x-served-by` values tracked before the rest are lumped under `other`.
const SERVED_BY_LIMIT: usize = 1000;

/// A fresh latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Counters and latency of one endpoint over some period.
#[derive(Debug, Clone)]
pub struct EndpointCounters {
    pub latency: Histogram<u64>,
    pub outcomes: [u64; 6],
    pub dropped: u64,
    pub status: BTreeMap<u16, u64>,
    /// Requests whose recorded latency exceeded the recorder's latency limit (the SLO's first latency objective),
    /// counted from the same value the histogram records, so exact rather than read back from histogram buckets.
    pub over_limit: u64,
}

impl Default for EndpointCounters {
    fn default() -> Self {
        EndpointCounters {
            latency: new_histogram(),
            outcomes: [0; 6],
            dropped: 0,
            status: BTreeMap::new(),
            over_limit: 0,
        }
    }
}

impl EndpointCounters {
    pub fn completed(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn errors(&self) -> u64 {
        self.completed() - self.outcomes[Outcome::Ok.index()]
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }

    pub fn merge(&mut self, other: &EndpointCounters) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        self.dropped += other.dropped;
        self.over_limit += other.over_limit;
        for (code, n) in &other.status {
            *self.status.entry(*code).or_default() += n;
        }
    }

    fn reset(&mut self) {
        self.latency.reset();
        self.outcomes = [0; 6];
        self.dropped = 0;
        self.over_limit = 0;
        self.status.clear();
    }
}

/// What one lock shard collects between two interval boundaries.
#[derive(Debug, Clone)]
pub struct Shard {
    pub endpoints: Vec<EndpointCounters>,
    pub served_by: HashMap<String, u64>,
}

impl Shard {
    pub fn new(endpoints: usize) -> Shard {
        Shard {
            endpoints: (0..endpoints)
                .map(|_| EndpointCounters::default())
                .collect(),
            served_by: HashMap::new(),
        }
    }

    pub fn merge(&mut self, other: &Shard) {
        for (a, b) in self.endpoints.iter_mut().zip(&other.endpoints) {
            a.merge(b);
        }
        for (k, v) in &other.served_by {
            add_served_by(&mut self.served_by, k, *v);
        }
    }

    fn reset(&mut self) {
        for e in &mut self.endpoints {
            e.reset();
        }
        self.served_by.clear();
    }

    /// All endpoints merged.
    pub fn overall(&self) -> EndpointCounters {
        let mut all = EndpointCounters::default();
        for e in &self.endpoints {
            all.merge(e);
        }
        all
    }
}

fn add_served_by(map: &mut HashMap<String, u64>, who: &str, n: u64) {
    if let Some(c) = map.get_mut(who) {
        *c += n;
    } else if map.len() < SERVED_BY_LIMIT {
        map.insert(who.to_string(), n);
    } else {
        *map.entry("other".to_string()).or_default() += n;
    }
}

/// The recorder workers write into: a few mutex-protected shards so that concurrent workers rarely contend, drained
/// by the interval collector.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    endpoints: usize,
    /// Latency above which a request counts in `over_limit`, in microseconds.
    latency_limit_us: Option<u64>,
}

impl Recorder {
    pub fn new(endpoints: usize, shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::new(endpoints)))
                .collect(),
            endpoints,
            latency_limit_us: None,
        }
    }

    /// Count requests slower than `limit` (in `EndpointCounters::over_limit`).
    pub fn with_latency_limit(mut self, limit: Option<Duration>) -> Recorder {
        self.latency_limit_us =
            limit.map(|l| u64::try_from(l.as_micros()).unwrap_or(LATENCY_MAX_US));
        self
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Record one finished request.
    pub fn record(
        &self,
        shard: usize,
        endpoint: usize,
        outcome: Outcome,
        latency: Duration,
        status: Option<u16>,
        served_by: Option<&str>,
    ) {
        let mut s = self.shards[shard % self.shards.len()]
            .lock()
            .expect("recorder lock");
        let e = &mut s.endpoints[endpoint];
        e.outcomes[outcome.index()] += 1;
        if outcome.has_latency() {
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(LATENCY_MAX_US)
                .clamp(1, LATENCY_MAX_US);
            e.latency.saturating_record(us);
            if self.latency_limit_us.is_some_and(|limit| us > limit) {
                e.over_limit += 1;
            }
        }
        if let Some(code) = status
            && outcome != Outcome::Ok
        {
            *e.status.entry(code).or_default() += 1;
        }
        if let Some(who) = served_by {
            add_served_by(&mut s.served_by, who, 1);
        }
    }

    /// Count requests that could not start on time.
    pub fn record_dropped(&self, shard: usize, endpoint: usize, n: u64) {
        let mut s = self.shards[shard % self.shards.len()]
            .lock()
            .expect("recorder lock");
        s.endpoints[endpoint].dropped += n;
    }

    /// Move everything recorded so far into one shard and reset the shards.
    pub fn drain(&self) -> Shard {
        let mut out = Shard::new(self.endpoints);
        for s in &self.shards {
            let mut s = s.lock().expect("recorder lock");
            out.merge(&s);
            s.reset();
        }
        out
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The `q` quantile (0..=1) of a histogram recorded in microseconds, in milliseconds; 0 when nothing was recorded.
/// The one percentile helper: every latency figure of the reports goes through it.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

impl LatencySummary {
    /// The percentiles of a histogram recorded in microseconds (all 0 when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50_ms: quantile_ms(h, 0.50),
            p90_ms: quantile_ms(h, 0.90),
            p95_ms: quantile_ms(h, 0.95),
            p99_ms: quantile_ms(h, 0.99),
            p99_9_ms: quantile_ms(h, 0.999),
            max_ms: h.max() as f64 / 1000.0,
            mean_ms: h.mean() / 1000.0,
        }
    }

    /// A percentile by name (`p50`, `p90`, `p95`, `p99`, `p99.9`, `max`, `mean`/`avg`), in milliseconds.
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "p50" | "median" => self.p50_ms,
            "p90" => self.p90_ms,
            "p95" => self.p95_ms,
            "p99" => self.p99_ms,
            "p99.9" | "p999" => self.p99_9_ms,
            "max" => self.max_ms,
            "mean" | "avg" => self.mean_ms,
            _ => return None,
        })
    }
}

/// Errors by class (each key an `outcome` label other than `ok`), plus status codes of HTTP errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub total: u64,
    pub throttled: u64,
    pub http_error: u64,
    pub timeout: u64,
    pub connect_error: u64,
    pub other_error: u64,
    /// Response status code -> count, for 429 and other error statuses.
    pub status_codes: BTreeMap<String, u64>,
}

impl ErrorSummary {
    pub fn from_counters(c: &EndpointCounters) -> ErrorSummary {
        ErrorSummary {
            total: c.errors(),
            throttled: c.count(Outcome::Throttled),
            http_error: c.count(Outcome::HttpError),
            timeout: c.count(Outcome::Timeout),
            connect_error: c.count(Outcome::ConnectError),
            other_error: c.count(Outcome::OtherError),
            status_codes: c.status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// Summary of one endpoint (or of all) over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Requests that finished (any outcome).
    pub requests: u64,
    pub ok: u64,
    /// Finished requests per second of run time.
    pub achieved_rate: f64,
    pub errors: ErrorSummary,
    pub dropped: u64,
    pub latency: LatencySummary,
}

impl EndpointSummary {
    pub fn from_counters(c: &EndpointCounters, elapsed_s: f64) -> EndpointSummary {
        let requests = c.completed();
        EndpointSummary {
            requests,
            ok: c.count(Outcome::Ok),
            achieved_rate: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            errors: ErrorSummary::from_counters(c),
            dropped: c.dropped,
            latency: LatencySummary::from_histogram(&c.latency),
        }
    }
}

/// How the generator itself fared over an interval: is the tool the bottleneck?
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// p99 of (actual start - scheduled start) of the requests started this interval, in ms.
    pub schedule_lag_p99_ms: f64,
    /// CPU the generator process used, in cores (1.0 = one core fully busy).
    pub cpu_cores: f64,
    /// Cores available to the generator.
    pub cores_available: f64,
    /// The generator could not keep its schedule: the shortfall is the tool's, not the target's.
    pub saturated: bool,
}

/// What happened during one progress interval; sent live to the caller and kept in the report's time series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalStats {
    pub index: u64,
    /// Seconds since load start at the interval's beginning and end.
    pub start_s: f64,
    pub end_s: f64,
    pub stage: Option<String>,
    /// Mean arrival rate the schedule asked for in this interval (req/s; this generator's share when distributed).
    pub target_rate: f64,
    /// Requests due in the interval (sent + dropped).
    pub scheduled: u64,
    /// Requests started.
    pub sent: u64,
    /// Requests finished (any outcome).
    pub completed: u64,
    /// Finished per second.
    pub achieved_rate: f64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub dropped: u64,
    /// Outstanding requests at the interval's end.
    pub in_flight: u64,
    pub latency: LatencySummary,
    /// Which replica answered how many requests (`x-served-by`).
    pub served_by: BTreeMap<String, u64>,
    /// Requests slower than the SLO's first latency limit (`--slo`), when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_slo: Option<u64>,
    /// Latest replica observation when monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaSnapshot>,
    pub self_check: SelfCheck,
    /// Per request-mix path (entries with the same path merged): rate, errors and latency in this interval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, EndpointInterval>,
}

/// One endpoint over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointInterval {
    /// Finished per second.
    pub rps: f64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub latency: LatencySummary,
}

impl EndpointInterval {
    /// Per path: the counters of `shard`'s endpoints (`paths[i]` names endpoint `i`) over `width_s` seconds.
    pub fn by_path(
        shard: &Shard,
        paths: &[String],
        width_s: f64,
    ) -> BTreeMap<String, EndpointInterval> {
        let mut merged: BTreeMap<&str, EndpointCounters> = BTreeMap::new();
        for (counters, path) in shard.endpoints.iter().zip(paths) {
            merged.entry(path.as_str()).or_default().merge(counters);
        }
        merged
            .into_iter()
            .map(|(path, c)| {
                (
                    path.to_string(),
                    EndpointInterval {
                        rps: c.completed() as f64 / width_s.max(1e-9),
                        ok: c.count(Outcome::Ok),
                        errors: c.errors(),
                        dropped: c.dropped,
                        latency: LatencySummary::from_histogram(&c.latency),
                    },
                )
            })
            .collect()
    }
}

impl IntervalStats {
    /// A one-line human summary, as printed on stderr each interval.
    pub fn progress_line(&self) -> String {
        let mut line = format!(
            "[{:>6.1}s] {:<12} rate {:>8.1}/{:<8.1} p50 {:>8} p95 {:>8} p99 {:>8} err {:>5} drop {:>5} inflight {:>4}",
            self.end_s,
            self.stage.as_deref().unwrap_or("-"),
            self.achieved_rate,
            self.target_rate,
            fmt_ms(self.latency.p50_ms),
            fmt_ms(self.latency.p95_ms),
            fmt_ms(self.latency.p99_ms),
            self.errors,
            self.dropped,
            self.in_flight,
        );
        if let Some(r) = &self.replicas {
            line.push_str(&format!(
                " replicas {}/{}/{} (desired/current/ready)",
                r.desired.map_or("-".into(), |v| v.to_string()),
                r.current.map_or("-".into(), |v| v.to_string()),
                r.ready.map_or("-".into(), |v| v.to_string()),
            ));
        }
        if self.self_check.saturated {
            line.push_str(&format!(
                " GENERATOR SATURATED (lag p99 {}, cpu {:.2}/{:.0} cores)",
                fmt_ms(self.self_check.schedule_lag_p99_ms),
                self.self_check.cpu_cores,
                self.self_check.cores_available
            ));
        }
        line
    }
}

/// Milliseconds in a short human form: `850us`, `12.3ms`, `1.94s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}us", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_drains_and_resets() {
        let r = Recorder::new(2, 4);
        r.record(
            0,
            0,
            Outcome::Ok,
            Duration::from_millis(10),
            Some(200),
            Some("pod-a"),
        );
        r.record(
            1,
            0,
            Outcome::Throttled,
            Duration::from_millis(20),
            Some(429),
            Some("pod-b"),
        );
        r.record(
            5,
            1,
            Outcome::ConnectError,
            Duration::from_millis(1),
            None,
            None,
        );
        r.record_dropped(2, 1, 3);
        let s = r.drain();
        let all = s.overall();
        assert_eq!(all.completed(), 3);
        assert_eq!(all.errors(), 2);
        assert_eq!(all.dropped, 3);
        assert_eq!(all.latency.len(), 2, "connect errors carry no latency");
        assert_eq!(all.status.get(&429), Some(&1));
        assert_eq!(s.served_by.len(), 2);
        assert_eq!(r.drain().overall().completed(), 0);
    }

    #[test]
    fn summary_percentiles() {
        let mut c = EndpointCounters::default();
        for ms in 1..=100u64 {
            c.latency.record(ms * 1000).unwrap();
            c.outcomes[0] += 1;
        }
        let s = EndpointSummary::from_counters(&c, 10.0);
        assert_eq!(s.achieved_rate, 10.0);
        assert!((s.latency.p50_ms - 50.0).abs() < 0.1);
        assert!((s.latency.p99_ms - 99.0).abs() < 0.1);
        assert!((s.latency.max_ms - 100.0).abs() < 0.1);
    }
}
