//! What the analysis reads: one run's timeline as plain numbers. The generator's `--monitor` path and the lab both
//! fill these types from what they observe, so the analysis never depends on either of them (nor on the autoscaler).
//! Times are seconds since the load started.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Latency percentiles of one interval, in seconds (`None` when not measured or nothing finished).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub p99_9_s: Option<f64>,
}

/// One measurement interval `[start_s, end_s)`. Replica counts are the observation at the interval's end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub start_s: f64,
    pub end_s: f64,
    /// Arrival rate the load asked for (req/s).
    pub offered_rate: f64,
    /// Requests finished per second.
    pub achieved_rate: f64,
    pub latency: Percentiles,
    /// Requests finished (any outcome).
    pub requests: u64,
    /// Failed requests by class (`http_error`, `timeout`, ...).
    #[serde(default)]
    pub errors_by_class: BTreeMap<String, u64>,
    /// Requests slower than the SLO's latency limit, when the source can count them.
    pub over_slo: Option<u64>,
    pub desired: Option<u32>,
    pub current: Option<u32>,
    pub ready: Option<u32>,
    /// Distinct `x-served-by` names that answered in the interval.
    #[serde(default)]
    pub served_by: Vec<String>,
    /// Requests waiting (in flight, queued) at the interval's end.
    pub backlog: Option<f64>,
}

impl Sample {
    pub fn errors(&self) -> u64 {
        self.errors_by_class.values().sum()
    }

    pub fn duration_s(&self) -> f64 {
        (self.end_s - self.start_s).max(0.0)
    }

    /// Replicas that cost money: existing, else ready, else desired.
    pub fn provisioned(&self) -> Option<u32> {
        self.current.or(self.ready).or(self.desired)
    }

    /// Replicas able to serve: ready, else existing.
    pub fn serving_capacity_replicas(&self) -> Option<u32> {
        self.ready.or(self.current)
    }
}

/// How a trigger's value compares with its target (the HPA's two external metric types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricType {
    /// The value is a total; the HPA divides it by the current replicas before comparing.
    AverageValue,
    /// The value is compared with the target as is.
    Value,
}

/// One reading of one trigger, as the controller saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalSample {
    pub t_s: f64,
    pub trigger: String,
    pub value: f64,
    pub target: f64,
    pub metric_type: MetricType,
    /// How old the value was when read (the scaler's window end to now, scrape lag), when known.
    pub age_s: Option<f64>,
}

/// A change of desired replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionPoint {
    pub t_s: f64,
    pub from: u32,
    pub to: u32,
    /// The trigger whose proposal won, when known.
    pub trigger: Option<String>,
    /// The controller's reasoning in words.
    #[serde(default)]
    pub reason: String,
}

/// One replica's life, as far as it was observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaLife {
    /// The `x-served-by` name.
    pub name: String,
    pub started_s: Option<f64>,
    /// First passed readiness.
    pub ready_s: Option<f64>,
    /// First answered a request of the load; when `None`, the end of the first sample naming it in `served_by`.
    pub first_served_s: Option<f64>,
    pub stopped_s: Option<f64>,
}

/// The autoscaler settings that govern the phases, in seconds (`None` when unknown).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Each trigger's measuring window (e.g. a request-rate trigger's rate window), by trigger name.
    #[serde(default)]
    pub trigger_windows: BTreeMap<String, f64>,
    pub polling_interval_s: Option<f64>,
    pub scale_up_stabilization_s: Option<f64>,
    /// `periodSeconds` of each scale-up policy.
    #[serde(default)]
    pub scale_up_policy_periods_s: Vec<f64>,
    pub scale_down_stabilization_s: Option<f64>,
    pub cooldown_s: Option<f64>,
    /// The HPA tolerance (0.1 by default in Kubernetes); a signal crosses when its ratio exceeds `1 + tolerance`.
    pub tolerance: Option<f64>,
    /// The fewest replicas the autoscaler may run (minReplicaCount, or 1 for a plain HPA).
    pub min_replicas: Option<u32>,
}

/// One run, as the analysis reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Per-interval samples, in time order.
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub signals: Vec<SignalSample>,
    #[serde(default)]
    pub decisions: Vec<DecisionPoint>,
    #[serde(default)]
    pub replicas: Vec<ReplicaLife>,
    /// When the load ended (the last time the offered rate was at least half its peak, in the generator).
    pub load_end_s: Option<f64>,
    #[serde(default)]
    pub settings: Settings,
}

impl Timeline {
    /// The timeline as it was known at time `t`: what a live view can analyse while the run goes on.
    pub fn until(&self, t: f64) -> Timeline {
        let cut = |v: Option<f64>| v.filter(|x| *x <= t);
        Timeline {
            samples: self
                .samples
                .iter()
                .filter(|s| s.end_s <= t)
                .cloned()
                .collect(),
            signals: self
                .signals
                .iter()
                .filter(|s| s.t_s <= t)
                .cloned()
                .collect(),
            decisions: self
                .decisions
                .iter()
                .filter(|d| d.t_s <= t)
                .cloned()
                .collect(),
            replicas: self
                .replicas
                .iter()
                .map(|r| ReplicaLife {
                    name: r.name.clone(),
                    started_s: cut(r.started_s),
                    ready_s: cut(r.ready_s),
                    first_served_s: cut(r.first_served_s),
                    stopped_s: cut(r.stopped_s),
                })
                .collect(),
            load_end_s: cut(self.load_end_s),
            settings: self.settings.clone(),
        }
    }

    /// Samples, signals and decisions in time order, as the analysis reads them (sources may append late readings).
    pub fn ordered(&self) -> std::borrow::Cow<'_, Timeline> {
        let sorted = self.samples.is_sorted_by(|a, b| a.start_s <= b.start_s)
            && self.signals.is_sorted_by(|a, b| a.t_s <= b.t_s)
            && self.decisions.is_sorted_by(|a, b| a.t_s <= b.t_s);
        if sorted {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut tl = self.clone();
        tl.samples.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        tl.signals.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        tl.decisions.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        std::borrow::Cow::Owned(tl)
    }

    /// The end of the last sample (the end of what was observed).
    pub fn observed_until(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.end_s)
    }
}
