//! What a run tells an observer while it goes (the web console's live feed) and the controls it obeys: [`RunHooks`]
//! passed to [`crate::run_observed`], called once per load interval from the run's own task.

use std::sync::Arc;

use crate::view::DecisionRecord;

/// What a run tells an observer while it goes (the console's live feed), and the live rate control it obeys.
#[derive(Clone, Default)]
pub struct RunHooks {
    pub observer: Option<Arc<dyn RunObserver>>,
    /// The open model's rate multiplier, changeable during the run.
    pub rate: Option<Arc<load::engine::RateControl>>,
    /// Faults from outside the profile's schedule (the console's chaos buttons): opened while the load runs.
    pub chaos: Option<Arc<crate::chaos::ChaosPort>>,
    /// Lines added to the view's header (kept on screen by the terminal view), e.g. the console's URL.
    pub banner: Vec<String>,
}

/// Receives a run's progress, once per load interval, from the run's own task (so it must not block).
pub trait RunObserver: Send + Sync {
    /// One load interval closed; decision and note times in [`LiveInterval`] are on the control loop's epoch.
    fn interval(&self, live: &LiveInterval<'_>);
}

/// One load interval as the run saw it, with what happened since the previous one.
pub struct LiveInterval<'a> {
    pub stats: &'a load::stats::IntervalStats,
    pub pool: Option<&'a crate::replicas::PoolSnapshot>,
    /// Controller steps since the previous interval (`t_s` on the epoch's clock).
    pub new_decisions: &'a [DecisionRecord],
    /// The latest controller step, if any.
    pub last_decision: Option<&'a DecisionRecord>,
    /// Lines the lab noted since the previous interval (the first interval carries those from the start).
    pub new_notes: &'a [String],
    /// When the load started on the epoch's clock (approximate until the run ends).
    pub load_start_s: f64,
    pub phase: Option<&'a str>,
    /// The profile's length: intervals after it are the settle phase.
    pub profile_end_s: f64,
}
