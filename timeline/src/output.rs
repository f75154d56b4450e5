//! What the analysis produces: the `scaling` block of `report.json` (`events[]`, scale-down steps, cost, advice).
//! The field meanings are defined in docs/scaling-report.md; [`SCHEMA`] names this shape.

use serde::{Deserialize, Serialize};

/// Version tag of the scaling analysis in `report.json` (`scaling.schema`); bumped on incompatible changes.
pub const SCHEMA: &str = "autoscaling-lab/scaling-events/v1";

/// The six phases of a scale-up, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Demand,
    Signal,
    Decision,
    Ready,
    Serving,
    Recovered,
}

impl PhaseName {
    pub const ALL: [PhaseName; 6] = [
        PhaseName::Demand,
        PhaseName::Signal,
        PhaseName::Decision,
        PhaseName::Ready,
        PhaseName::Serving,
        PhaseName::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Demand => "demand",
            PhaseName::Signal => "signal",
            PhaseName::Decision => "decision",
            PhaseName::Ready => "ready",
            PhaseName::Serving => "serving",
            PhaseName::Recovered => "recovered",
        }
    }

    /// What the run waits for while this phase is in progress (for the live view).
    pub fn waiting_for(self) -> &'static str {
        match self {
            PhaseName::Demand => "the load to outgrow the replicas",
            PhaseName::Signal => "the trigger to cross its target",
            PhaseName::Decision => "the autoscaler to raise desired replicas",
            PhaseName::Ready => "new replicas to pass readiness",
            PhaseName::Serving => "new replicas to answer the load",
            PhaseName::Recovered => "the SLO to hold again",
        }
    }
}

/// A setting that governs a phase, with its value when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: Option<f64>,
    /// `s` for durations, `req/s` for capacity, empty otherwise.
    pub unit: String,
}

/// One phase of a scale-up: the milestone that ends it and the wait it added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: PhaseName,
    /// When the milestone happened (`None`: it did not happen or was not observed).
    pub at_s: Option<f64>,
    /// The wait this milestone added: from when the previous present milestones were all reached to when this one
    /// was (0 when it had already happened). `None` when the milestone is missing.
    pub duration_s: Option<f64>,
    /// The first entry is the main one.
    pub governed_by: Vec<Setting>,
}

/// Whether an event is a scale-up or an SLO breach that followed a step down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ScaleUp,
    /// The SLO broke within the hurt window after a step down; the phases describe the way back.
    ScaleDownHurt,
}

/// The trigger reading at the signal milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalDetail {
    /// When the controller read it.
    pub t_s: f64,
    pub trigger: String,
    pub value: f64,
    pub target: f64,
    pub age_s: Option<f64>,
}

/// One step down of desired replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleDownStep {
    pub t_s: f64,
    pub from: u32,
    pub to: u32,
    /// Time since the load ended (`None` when the step came before the load end or the end is unknown).
    pub after_load_end_s: Option<f64>,
}

/// One scale event with its phases and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// 1-based, in time order.
    pub id: u32,
    pub kind: EventKind,
    /// Desired replicas before the first scale-up decision and after the last one (`None` without a decision).
    pub from_replicas: Option<u32>,
    pub to_replicas: Option<u32>,
    /// Scale-up decisions merged into this event (see the overlap rule).
    pub decisions: u32,
    pub trigger: Option<String>,
    pub signal: Option<SignalDetail>,
    /// The first and last present milestones (after ordering; see [`Phase::duration_s`]).
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    /// `end_s - start_s`: the sum of the phases' durations.
    pub total_s: Option<f64>,
    /// Always six, in [`PhaseName::ALL`] order.
    pub phases: Vec<Phase>,
    /// The phase with the longest duration.
    pub dominant: Option<PhaseName>,
    /// Demand to recovery (to the end of observation when never recovered); 0 without demand.
    pub under_provisioned_s: f64,
    /// Requests finished in the under-provisioned window, those slower than the SLO latency (when counted) and failed.
    pub requests: u64,
    pub slow_requests: Option<u64>,
    pub errors: u64,
    /// Share of the run's error budget (allowed error share x run requests) the window's errors used.
    pub error_budget_burned: Option<f64>,
    /// Share of the run's latency budget (requests allowed over the counted percentile) the window's slow requests used.
    pub latency_budget_burned: Option<f64>,
    /// For [`EventKind::ScaleDownHurt`]: the step down that preceded the breach.
    pub after_scale_down: Option<ScaleDownStep>,
}

impl ScaleEvent {
    pub fn phase(&self, name: PhaseName) -> &Phase {
        &self.phases[name as usize]
    }
}

/// Per-replica capacity used for "needed" replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub per_replica_rate: f64,
    /// `given` (an option) or `observed` (highest achieved rate per serving replica in an interval that kept the SLO).
    pub source: String,
}

/// What the replicas cost over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Provisioned replicas x seconds over the observed samples.
    pub replica_seconds: f64,
    pub requests: u64,
    pub replica_seconds_per_1000_requests: Option<f64>,
    /// Replica-seconds above the needed replicas (see docs/scaling-report.md); `None` without a capacity.
    pub wasted_replica_seconds: Option<f64>,
    /// The part of the waste after the load ended.
    pub wasted_after_load_end: Option<f64>,
    /// Waste from the load end to the first step down (the scale-down stabilization window's share).
    pub wasted_before_first_step_down: Option<f64>,
    /// Most replicas above needed in that span.
    pub idle_replicas_before_first_step_down: Option<u32>,
}

/// The scaling analysis of one run (`report.json`'s `scaling` events block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingAnalysis {
    pub schema: String,
    pub slo: Option<String>,
    pub capacity: Option<Capacity>,
    pub events: Vec<ScaleEvent>,
    pub scale_downs: Vec<ScaleDownStep>,
    pub cost: Cost,
    pub advice: Vec<String>,
}
