//! The scaling report's pure core (issue 10): where the time to scale goes. From one run's timeline (per-interval
//! load samples, trigger readings, decisions, replica lives and the governing settings) it finds the scale events,
//! splits each scale-up into six phases (demand, signal, decision, ready, serving, recovered), names the setting that
//! governs each and the one that dominated, counts the SLO lost, prices the replica-seconds wasted after the load, and
//! says in words what would help. No I/O and no clock: the generator's `--monitor` path and the lab fill
//! [`Timeline`] and call [`analyse`]. Definitions: docs/scaling-report.md.

pub mod advice;
pub mod cost;
mod episodes;
mod events;
pub mod input;
pub mod output;
pub mod render;
pub mod slo;

pub use cost::needed_replicas;
pub use input::{
    DecisionPoint, MetricType, Percentiles, ReplicaLife, Sample, Settings, SignalSample, Timeline,
};
pub use output::{
    Capacity, Cost, EventKind, Phase, PhaseName, SCHEMA, ScaleDownStep, ScaleEvent,
    ScalingAnalysis, Setting, SignalDetail,
};
pub use render::{pending_phase, phase_in_progress, render_event};
pub use slo::{LatencyObjective, Percentile, Slo, SloError};

use serde::{Deserialize, Serialize};

/// How the analysis judges a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// How long the SLO must hold (with no under-provisioning) for an episode to count as recovered, in seconds.
    pub recovery_hold_s: f64,
    /// An SLO breach starting this long after a step down makes that step down an event that hurt, in seconds.
    pub hurt_window_s: f64,
    /// Requests per second one replica serves within the SLO. When given, an offered rate above
    /// `capacity x serving replicas` is demand too; when absent, the observed capacity is used for "needed" only.
    pub capacity_per_replica: Option<f64>,
    /// Backlog one replica may hold; above `limit x serving replicas` is demand too.
    pub backlog_per_replica: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            recovery_hold_s: 5.0,
            hurt_window_s: 30.0,
            capacity_per_replica: None,
            backlog_per_replica: None,
        }
    }
}

/// Analyse one run. Without an SLO, demand comes only from a given capacity or backlog limit.
pub fn analyse(tl: &Timeline, slo: Option<&Slo>, opts: &Options) -> ScalingAnalysis {
    let tl = &*tl.ordered();
    let ctx = episodes::Ctx::new(tl, slo, opts);
    let events = events::events(&ctx);
    let scale_downs = events::scale_downs(tl);
    let cost = cost::cost(&ctx, &scale_downs);
    let advice = advice::advise(&events, &cost, &tl.settings);
    ScalingAnalysis {
        schema: SCHEMA.into(),
        slo: slo.map(ToString::to_string),
        capacity: ctx.capacity,
        events,
        scale_downs,
        cost,
        advice,
    }
}
