//! Advice in words, derived only from the analysed numbers: which phase dominated each event and which setting
//! shortens it, demand nothing answered, steps down that hurt, and replicas kept idle after the load.

use crate::input::Settings;
use crate::output::{Cost, EventKind, PhaseName, ScaleEvent};

/// Seconds with at most one decimal (`60`, `6.9`).
pub fn secs(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

fn opt_secs(x: Option<f64>) -> String {
    x.map_or("unknown".into(), |v| format!("{} s", secs(v)))
}

/// A backlog trigger other than `trigger`, if the run has one, to suggest by name.
fn backlog_trigger(settings: &Settings, trigger: &str) -> String {
    settings
        .trigger_windows
        .keys()
        .find(|k| k.contains("backlog") && k.as_str() != trigger)
        .map_or("a backlog trigger".into(), |k| format!("the {k} trigger"))
}

fn dominant_sentence(e: &ScaleEvent, settings: &Settings) -> Option<String> {
    let name = e.dominant?;
    let took = e.phase(name).duration_s?;
    let total = e.total_s?;
    let head = format!("{} s of the {} s", secs(took), secs(total));
    let trigger = e.trigger.as_deref().unwrap_or("driving");
    Some(match name {
        PhaseName::Demand => return None,
        PhaseName::Signal => match settings.trigger_windows.get(trigger) {
            Some(w) => format!(
                "{head} went to the {trigger} trigger's {} s window: a shorter window, or {}, reacts sooner",
                secs(*w),
                backlog_trigger(settings, trigger)
            ),
            None => format!(
                "{head} went to waiting for the {trigger} trigger to cross its target (value age {}): a fresher \
                 metric, or {}, reacts sooner",
                opt_secs(e.signal.as_ref().and_then(|s| s.age_s)),
                backlog_trigger(settings, trigger)
            ),
        },
        PhaseName::Decision
            if e.phase(PhaseName::Decision)
                .governed_by
                .first()
                .map(|g| g.name.as_str())
                == Some("scale-up policy period") =>
        {
            format!(
                "{head} went to the decision, held back by the scale-up policies (at most one step per {} after \
                 the previous scale-up): a larger policy step (more Pods or Percent per period) reaches the need \
                 sooner",
                opt_secs(
                    e.phase(PhaseName::Decision)
                        .governed_by
                        .first()
                        .and_then(|g| g.value)
                )
            )
        }
        PhaseName::Decision => format!(
            "{head} went to the decision (pollingInterval {}, scale-up stabilization window {}): a shorter \
             pollingInterval or stabilization window decides sooner",
            opt_secs(settings.polling_interval_s),
            opt_secs(settings.scale_up_stabilization_s)
        ),
        PhaseName::Ready => format!(
            "{head} went to new replicas starting and passing readiness: a faster start-up, a lighter readiness \
             check or a higher minReplicaCount shortens it"
        ),
        PhaseName::Serving => format!(
            "{head} went from readiness to the first answer: clients kept their connections to the old replicas; \
             shorter keep-alive or per-request balancing spreads the load sooner"
        ),
        PhaseName::Recovered if e.decisions > 1 => format!(
            "{head} went to recovering after the first new replicas served, in {} steps paced by the scale-up \
             policy period ({}): a larger policy step reaches the need sooner",
            e.decisions,
            opt_secs(
                settings
                    .scale_up_policy_periods_s
                    .iter()
                    .copied()
                    .min_by(f64::total_cmp)
            )
        ),
        PhaseName::Recovered => format!(
            "{head} went to recovering after the new replicas served (the backlog draining): scaling up earlier or \
             further leaves less to drain"
        ),
    })
}

/// The advice sentences for the events and the cost, in event order.
pub fn advise(events: &[ScaleEvent], cost: &Cost, settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        let at = |p: PhaseName| e.phase(p).at_s;
        let prefix = format!("event {}: ", e.id);
        if let (EventKind::ScaleDownHurt, Some(step)) = (e.kind, &e.after_scale_down) {
            let breach = at(PhaseName::Demand).unwrap_or(step.t_s);
            out.push(format!(
                "{prefix}the step down from {} to {} replicas at {} s was followed by an SLO breach {} s later: a \
                 longer scale-down stabilization window (now {}) or a slower scale-down policy avoids it",
                step.from,
                step.to,
                secs(step.t_s),
                secs(breach - step.t_s),
                opt_secs(settings.scale_down_stabilization_s)
            ));
        }
        match (at(PhaseName::Demand), at(PhaseName::Decision)) {
            (Some(t), None) => out.push(match &e.signal {
                Some(s) => format!(
                    "{prefix}the {} trigger crossed its target at {} s but no scale-up followed: is \
                     maxReplicaCount reached?",
                    s.trigger,
                    secs(s.t_s)
                ),
                None => format!(
                    "{prefix}the load outgrew the replicas at {} s and no trigger crossed its target: lower the \
                     targets or add a trigger that follows this load",
                    secs(t)
                ),
            }),
            (_, Some(t)) if at(PhaseName::Ready).is_none() => out.push(format!(
                "{prefix}the replicas asked for at {} s ({} -> {}) never all passed readiness",
                secs(t),
                e.from_replicas.unwrap_or(0),
                e.to_replicas.unwrap_or(0)
            )),
            _ => {}
        }
        if at(PhaseName::Demand).is_some() && at(PhaseName::Recovered).is_none() {
            out.push(format!(
                "{prefix}the SLO had not held again for the hold window when observation ended"
            ));
        }
        if let Some(s) = dominant_sentence(e, settings) {
            out.push(format!("{prefix}{s}"));
        }
    }
    if let (Some(w), Some(n)) = (
        cost.wasted_before_first_step_down.filter(|w| *w > 0.0),
        cost.idle_replicas_before_first_step_down,
    ) {
        out.push(match settings.scale_down_stabilization_s {
            Some(window) => format!(
                "the {} s scale-down stabilization window kept {n} replicas idle: {w:.0} replica-seconds",
                secs(window)
            ),
            None => format!(
                "after the load ended, {n} replicas stayed idle before the first step down: {w:.0} replica-seconds"
            ),
        });
    }
    out
}
