//! Under-provisioned episodes: stretches of the run from the first interval that was under-provisioned (the SLO broke,
//! or, with a given capacity, the offered rate or backlog outgrew the serving replicas) to the start of the first
//! hold window in which none was. Also the per-replica capacity and the replica count in force at a time.

use crate::Options;
use crate::input::{MetricType, SignalSample, Timeline};
use crate::output::Capacity;
use crate::slo::Slo;

/// Slack for float comparisons of times and rates.
pub(crate) const EPS: f64 = 1e-9;

/// One under-provisioned stretch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Episode {
    pub demand_s: f64,
    /// Start of the first hold window without under-provisioning; `None` if the run ended first.
    pub recovered_s: Option<f64>,
}

impl Episode {
    pub fn contains(&self, t: f64) -> bool {
        t >= self.demand_s - EPS && self.recovered_s.is_none_or(|r| t < r - EPS)
    }
}

/// What the analysis shares between its parts.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub tl: &'a Timeline,
    pub slo: Option<&'a Slo>,
    pub opts: &'a Options,
    pub capacity: Option<Capacity>,
}

impl<'a> Ctx<'a> {
    pub fn new(tl: &'a Timeline, slo: Option<&'a Slo>, opts: &'a Options) -> Ctx<'a> {
        let capacity = match opts.capacity_per_replica {
            Some(c) if c > 0.0 => Some(Capacity {
                per_replica_rate: c,
                source: "given".into(),
            }),
            _ => observed_capacity(tl, slo).map(|c| Capacity {
                per_replica_rate: c,
                source: "observed".into(),
            }),
        };
        Ctx {
            tl,
            slo,
            opts,
            capacity,
        }
    }

    /// Whether sample `i` was under-provisioned. Only a *given* capacity counts here: an observed one is the best
    /// interval's rate, which ordinary jitter in the offered rate would cross.
    pub fn under(&self, i: usize) -> bool {
        let s = &self.tl.samples[i];
        if self.slo.is_some_and(|slo| slo.breached(s)) {
            return true;
        }
        let Some(serving) = s.serving_capacity_replicas() else {
            return false;
        };
        let serving = f64::from(serving);
        let over_rate = self
            .opts
            .capacity_per_replica
            .is_some_and(|c| s.offered_rate > c * serving + EPS);
        let over_backlog = self
            .opts
            .backlog_per_replica
            .zip(s.backlog)
            .is_some_and(|(limit, b)| b > limit * serving + EPS);
        over_rate || over_backlog
    }

    /// The under-provisioned episodes, in time order.
    pub fn episodes(&self) -> Vec<Episode> {
        let samples = &self.tl.samples;
        let hold = self.opts.recovery_hold_s.max(0.0);
        let mut out = Vec::new();
        let mut i = 0;
        while i < samples.len() {
            if !self.under(i) {
                i += 1;
                continue;
            }
            let demand_s = samples[i].start_s;
            let mut recovered_s = None;
            let mut j = i + 1;
            'search: while j < samples.len() {
                if self.under(j) {
                    j += 1;
                    continue;
                }
                let mut k = j;
                while k < samples.len() && !self.under(k) {
                    if samples[k].end_s - samples[j].start_s >= hold - EPS {
                        recovered_s = Some(samples[j].start_s);
                        break 'search;
                    }
                    k += 1;
                }
                j = k;
            }
            out.push(Episode {
                demand_s,
                recovered_s,
            });
            i = j.max(i + 1);
        }
        out
    }

    /// Desired replicas in force just before `t`: the last decision strictly before it, else the first decision's
    /// starting point, else the sample covering `t`.
    pub fn replicas_before(&self, t: f64) -> Option<u32> {
        let ds = &self.tl.decisions;
        if let Some(d) = ds.iter().rev().find(|d| d.t_s < t - EPS) {
            return Some(d.to);
        }
        if let Some(d) = ds.first() {
            return Some(d.from);
        }
        self.tl
            .samples
            .iter()
            .find(|s| s.end_s >= t - EPS)
            .or(self.tl.samples.last())
            .and_then(|s| s.desired.or(s.current))
    }

    /// Whether a trigger reading asks for more replicas than were running: its usage ratio (value per replica for
    /// AverageValue) exceeds `1 + tolerance`.
    pub fn crosses(&self, s: &SignalSample) -> bool {
        if s.target <= 0.0 {
            return false;
        }
        let tol = self.tl.settings.tolerance.unwrap_or(0.0);
        let ratio = match s.metric_type {
            MetricType::Value => s.value / s.target,
            MetricType::AverageValue => {
                let replicas = self.replicas_before(s.t_s).unwrap_or(1).max(1);
                s.value / (s.target * f64::from(replicas))
            }
        };
        ratio > 1.0 + tol + EPS
    }
}

/// The highest achieved rate per serving replica over intervals that kept the SLO (all intervals without an SLO).
fn observed_capacity(tl: &Timeline, slo: Option<&Slo>) -> Option<f64> {
    tl.samples
        .iter()
        .filter(|s| !slo.is_some_and(|slo| slo.breached(s)))
        .filter_map(|s| {
            let r = s.serving_capacity_replicas().filter(|r| *r > 0)?;
            (s.achieved_rate > 0.0).then(|| s.achieved_rate / f64::from(r))
        })
        .max_by(f64::total_cmp)
}
