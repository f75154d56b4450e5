//! What the autoscaler did around a cluster fault, read from `--monitor`'s observations (the report's
//! `scaling.timeline`: the HPA's desiredReplicas, the Deployment's replicas, the ScaledObject's conditions). A cluster
//! has no controller log to read, so a fault's reaction is what the monitor saw in the fault's window: how many
//! observations, the desired-count changes, and the observations in which KEDA's ScaledObject said `Fallback=True`
//! (its fallback replicas stand in for a failing trigger) or `Ready=False` (a trigger could not be read). Without
//! `--monitor` the reaction stays empty and the table says `-`.

use crate::model::TimelinePoint;
use crate::report::{AutoscalerReaction, Report};

/// Fill every cluster fault's `autoscaler` from the report's scaling timeline.
pub fn follow_autoscaler(report: &mut Report) {
    let Some(timeline) = report.scaling.as_ref().map(|s| s.timeline.clone()) else {
        return;
    };
    let Some(chaos) = report.chaos.as_mut() else {
        return;
    };
    for f in chaos.faults.iter_mut().filter(|f| f.status.is_some()) {
        // The window: from the fault to its recovery, or to its undo when that came later.
        let undone = f.returned_after_s.map(|t| f.at_s + t);
        let end = undone.map_or(f.window_end_s, |u| u.max(f.window_end_s));
        f.autoscaler = reaction(&timeline, f.at_s, end);
    }
}

/// The observations from `from_s` to `to_s` (seconds since the load started), as the reaction to a fault at `from_s`.
pub fn reaction(timeline: &[TimelinePoint], from_s: f64, to_s: f64) -> AutoscalerReaction {
    let mut a = AutoscalerReaction::default();
    // The desired count in force at the fault: the last observation before it.
    let mut desired = timeline
        .iter()
        .rev()
        .find(|p| p.t_s < from_s)
        .and_then(|p| p.snapshot.desired);
    for p in timeline.iter().filter(|p| p.t_s >= from_s && p.t_s <= to_s) {
        a.steps += 1;
        let detail = p.snapshot.detail.as_deref().unwrap_or("");
        if has_condition(detail, "Ready=False") {
            a.failed_readings += 1;
        }
        if has_condition(detail, "Fallback=True") {
            a.fallback_steps += 1;
            if a.fallback_first_after_s.is_none() {
                a.fallback_first_after_s = Some(p.t_s - from_s);
                a.fallback_detail = Some(detail.to_string());
            }
        }
        if let Some(now) = p.snapshot.desired {
            if let Some(before) = desired.filter(|b| *b != now) {
                a.changes.push(format!(
                    "{:.1}s {before} -> {now}: desired replicas ({}){}",
                    p.t_s - from_s,
                    p.snapshot.source,
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!("; {detail}")
                    }
                ));
            }
            desired = Some(now);
        }
    }
    a
}

/// Whether the monitor's comma-separated detail holds `condition` (`Fallback=True`) as an item of its own.
fn has_condition(detail: &str, condition: &str) -> bool {
    detail.split(',').any(|item| item.trim() == condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReplicaSnapshot;

    fn point(t_s: f64, desired: u32, detail: &str) -> TimelinePoint {
        TimelinePoint {
            t_s,
            snapshot: ReplicaSnapshot {
                desired: Some(desired),
                current: Some(desired),
                ready: Some(desired),
                detail: (!detail.is_empty()).then(|| detail.to_string()),
                source: "kubernetes".into(),
            },
        }
    }

    #[test]
    fn the_window_counts_observations_changes_and_fallback() {
        let timeline = vec![
            point(9.0, 3, "Active=True, Ready=True"),
            point(10.5, 3, "Active=True, Ready=False"),
            point(11.5, 5, "Active=True, Fallback=True, Ready=False"),
            point(12.5, 5, "Active=True, Fallback=True, Ready=False"),
            point(13.5, 4, "Active=True, Ready=True"),
            point(30.0, 1, ""),
        ];
        let a = reaction(&timeline, 10.0, 14.0);
        assert_eq!(a.steps, 4, "{a:?}");
        assert_eq!(a.failed_readings, 3);
        assert_eq!(a.fallback_steps, 2);
        assert_eq!(a.fallback_first_after_s, Some(1.5));
        assert!(
            a.fallback_detail
                .as_deref()
                .unwrap()
                .contains("Fallback=True")
        );
        assert_eq!(a.changes.len(), 2, "{:?}", a.changes);
        assert!(a.changes[0].starts_with("1.5s 3 -> 5: desired replicas (kubernetes)"));
        assert!(a.changes[1].starts_with("3.5s 5 -> 4"));
        // Nothing observed in the window: an empty reaction.
        assert_eq!(
            reaction(&timeline, 14.0, 20.0),
            AutoscalerReaction::default()
        );
        // A condition is matched as an item, not as a substring of another.
        assert!(!has_condition("NotFallback=True", "Fallback=True"));
    }
}
