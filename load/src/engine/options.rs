//! What a run is asked for ([`RunOptions`]), why it may refuse to start ([`EngineError`]) and what it hands back
//! ([`RunData`]: the measurements from which the `report` module assembles the report).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

use crate::client::RecyclePolicy;
use crate::metrics::GeneratorMetrics;
use crate::model::{ArrivalMode, Split, TimelinePoint};
use crate::profile::Profile;
use crate::stats::{IntervalStats, LatencySummary, Shard};
use crate::trace::Tracing;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error("request entry {index} ({name}): {reason}")]
    Request {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("invalid option {option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
}

/// Options of a run.
#[derive(Clone)]
pub struct RunOptions {
    pub mode: ArrivalMode,
    /// Cap on outstanding requests; a request due when the cap is reached is dropped (counted, never delayed).
    pub max_in_flight: usize,
    /// Per-request timeout, connect included.
    pub timeout: Duration,
    /// Progress interval (each produces one `IntervalStats`).
    pub interval: Duration,
    /// After an interruption, how long in-flight requests may still finish.
    pub drain_timeout: Duration,
    pub recycle: RecyclePolicy,
    pub split: Split,
    /// Extra headers on every request (e.g. `Authorization`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Trace propagation and client spans.
    pub tracing: Option<Arc<Tracing>>,
    /// How often the replica source is polled.
    pub monitor_interval: Duration,
    /// Keep observing replicas this long after the load ends (to see the scale-down).
    pub watch_after: Duration,
    /// Prometheus metrics to update each interval.
    pub metrics: Option<Arc<GeneratorMetrics>>,
    /// The service level objective the scaling report judges by (`--slo`, or derived from the thresholds). Its first
    /// latency limit is counted per interval (`IntervalStats::over_slo`).
    pub slo: Option<timeline::Slo>,
    /// Log every request's outcome here (the lab's chaos measurements); `None`: no log.
    pub request_log: Option<super::RequestLog>,
    /// A live multiplier of the open model's arrival rate (the lab console's rate control); `None` = the profile's.
    pub rate: Option<Arc<RateControl>>,
}

/// A multiplier of the arrival rate that can change while the load runs: the open model reads it at least every
/// [`RateControl::POLL`] and re-plans the rest of the schedule from that instant at the new rate.
#[derive(Debug)]
pub struct RateControl {
    bits: std::sync::atomic::AtomicU64,
}

impl RateControl {
    /// How often a waiting schedule re-reads the multiplier (a change takes effect within this).
    pub const POLL: Duration = Duration::from_millis(100);

    pub fn new(multiplier: f64) -> RateControl {
        RateControl {
            bits: std::sync::atomic::AtomicU64::new(multiplier.to_bits()),
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sets the multiplier; values that are not finite and positive are ignored (the caller validates).
    pub fn set(&self, multiplier: f64) {
        if multiplier.is_finite() && multiplier > 0.0 {
            self.bits
                .store(multiplier.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Default for RateControl {
    fn default() -> Self {
        RateControl::new(1.0)
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("mode", &self.mode)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .field("recycle", &self.recycle)
            .field("split", &self.split)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: ArrivalMode::Open,
            max_in_flight: 1000,
            timeout: Duration::from_secs(30),
            interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            recycle: RecyclePolicy::default(),
            split: Split::default(),
            headers: Vec::new(),
            tracing: None,
            monitor_interval: Duration::from_secs(2),
            watch_after: Duration::ZERO,
            metrics: None,
            slo: None,
            rate: None,
            request_log: None,
        }
    }
}

impl RunOptions {
    /// The latency limit requests are counted against: the SLO's first latency objective.
    pub fn slo_latency_limit(&self) -> Option<Duration> {
        self.slo
            .as_ref()
            .and_then(timeline::Slo::counted_latency)
            .map(|o| Duration::from_secs_f64(o.limit_s))
    }

    /// Refuse options no run can honour.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.split.count == 0 || self.split.index >= self.split.count {
            return Err(EngineError::Option {
                option: "split",
                reason: format!(
                    "index {} must be below the pod count {}",
                    self.split.index, self.split.count
                ),
            });
        }
        if self.max_in_flight == 0 {
            return Err(EngineError::Option {
                option: "max_in_flight",
                reason: "must be >= 1".into(),
            });
        }
        if self.interval < Duration::from_millis(10) {
            return Err(EngineError::Option {
                option: "interval",
                reason: "must be >= 10ms".into(),
            });
        }
        if let ArrivalMode::ClosedLoop { connections: 0 } = self.mode {
            return Err(EngineError::Option {
                option: "connections",
                reason: "must be >= 1".into(),
            });
        }
        Ok(())
    }
}

/// What the engine hands to `report::Report::assemble`.
#[derive(Debug)]
pub struct RunData {
    pub profile: Profile,
    pub mode: ArrivalMode,
    pub split: Split,
    pub started_at: SystemTime,
    pub load_elapsed: Duration,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub unfinished: u64,
    pub endpoint_names: Vec<String>,
    pub totals: Shard,
    pub intervals: Vec<IntervalStats>,
    pub timeline: Vec<TimelinePoint>,
    pub monitor_name: Option<String>,
    pub monitor_errors: u64,
    pub monitor_last_error: Option<String>,
    /// What the replica source recorded for the scaling analysis (decisions, pods, signals, settings).
    pub scaling_record: Option<crate::monitor::ScalingRecord>,
    /// The SLO the run was judged by (`RunOptions::slo`).
    pub slo: Option<timeline::Slo>,
    pub expected_requests: f64,
    pub load_end_s: f64,
    pub schedule_lag: LatencySummary,
    pub generator_cpu_seconds: Option<f64>,
    pub targets: Vec<String>,
}
