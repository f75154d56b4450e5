//! The `timeline` crate's input for a `--monitor` run, built from [`RunData`] at report assembly: the interval
//! samples ([`super::scaling_input`]), the decisions (the HPA's `SuccessfulRescale` Events when the source read any
//! during the run, else the `desiredReplicas` changes between observations, timed by the HPA's `lastScaleTime` when it
//! falls between them), the pods' lives (Ready transitions, named as in `x-served-by`), the trigger readings of the
//! scaler's `/explain` and the settings read from the ScaledObject or HPA spec. It also says which inputs were
//! missing, so a reader knows which phases rest on the coarser observations.

use std::time::UNIX_EPOCH;

use crate::engine::RunData;
use crate::model::TimelinePoint;
use crate::monitor::ScalingRecord;

/// Where the decisions came from.
pub const DECISIONS_FROM_EVENTS: &str = "HPA SuccessfulRescale events";
pub const DECISIONS_FROM_OBSERVATIONS: &str = "desiredReplicas changes between observations";

/// A run's timeline with notes on how it was made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuiltTimeline {
    pub timeline: timeline::Timeline,
    /// [`DECISIONS_FROM_EVENTS`] or [`DECISIONS_FROM_OBSERVATIONS`] (`None` without any decision).
    pub decisions_from: Option<String>,
    /// `input: why` for each input that could not be read.
    pub missing: Vec<String>,
}

/// Build the timeline of a finished run.
pub fn build(d: &RunData) -> BuiltTimeline {
    let start_unix = d
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64());
    build_from(
        &super::scaling_input::samples(&d.intervals),
        &d.timeline,
        d.scaling_record.as_ref(),
        start_unix,
        d.load_end_s,
    )
}

/// [`build`] from its parts; `start_unix` is when the load started (the record's times are Unix seconds).
pub fn build_from(
    samples: &[timeline::Sample],
    observations: &[TimelinePoint],
    record: Option<&ScalingRecord>,
    start_unix: f64,
    load_end_s: f64,
) -> BuiltTimeline {
    let empty = ScalingRecord::default();
    let rec = record.unwrap_or(&empty);
    let rel = |unix: f64| unix - start_unix;
    let signals: Vec<timeline::SignalSample> = rec
        .signals
        .iter()
        .map(|s| timeline::SignalSample {
            t_s: rel(s.at_unix),
            trigger: s.trigger.clone(),
            value: s.value,
            target: s.target,
            metric_type: s.metric_type,
            age_s: s.age_s,
        })
        .collect();
    let settings = rec.settings.clone().unwrap_or_default();
    let mut trigger_names: Vec<String> = signals.iter().map(|s| s.trigger.clone()).collect();
    trigger_names.extend(settings.trigger_windows.keys().cloned());
    trigger_names.sort();
    trigger_names.dedup();
    // Longest first, so `rate-2` is not mistaken for `rate`.
    trigger_names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let trigger_in = |reason: &str| {
        trigger_names
            .iter()
            .find(|n| reason.contains(n.as_str()))
            .cloned()
    };

    let desired_before = |t: f64| {
        observations
            .iter()
            .filter(|p| p.t_s < t)
            .filter_map(|p| p.snapshot.desired)
            .next_back()
            .or_else(|| observations.iter().find_map(|p| p.snapshot.desired))
    };
    // Events from before the load started belong to an earlier run.
    let mut from_events: Vec<(f64, u32, String)> = rec
        .decisions
        .iter()
        .map(|e| (rel(e.at_unix), e.to, e.reason.clone()))
        .filter(|(t, _, _)| *t >= 0.0)
        .collect();
    from_events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut decisions = Vec::new();
    let decisions_from;
    if from_events.is_empty() {
        let scale_times: Vec<f64> = rec.scale_times_unix.iter().map(|t| rel(*t)).collect();
        let mut prev: Option<(f64, u32)> = None;
        for p in observations {
            let Some(to) = p.snapshot.desired else {
                continue;
            };
            if let Some((prev_t, from)) = prev
                && from != to
            {
                // The HPA's own record of the step is closer than the observation, which only bounds it. The API
                // writes lastScaleTime to the second, so a step just after the previous observation can carry a time
                // up to 1 s before it.
                let after = decisions
                    .last()
                    .map_or(f64::NEG_INFINITY, |d: &timeline::DecisionPoint| d.t_s);
                let t_s = scale_times
                    .iter()
                    .copied()
                    .filter(|t| *t > (prev_t - 1.0).max(after) && *t <= p.t_s)
                    .reduce(f64::max)
                    .unwrap_or(p.t_s);
                decisions.push(timeline::DecisionPoint {
                    t_s,
                    from,
                    to,
                    trigger: None,
                    reason: format!("desiredReplicas {from} -> {to}"),
                });
            }
            prev = Some((p.t_s, to));
        }
        decisions_from = (!decisions.is_empty()).then(|| DECISIONS_FROM_OBSERVATIONS.to_string());
    } else {
        let mut last_to: Option<u32> = None;
        for (t_s, to, reason) in from_events {
            let from = last_to.or_else(|| desired_before(t_s)).unwrap_or(to);
            last_to = Some(to);
            if from == to {
                continue;
            }
            decisions.push(timeline::DecisionPoint {
                t_s,
                from,
                to,
                trigger: trigger_in(&reason),
                reason,
            });
        }
        decisions_from = Some(DECISIONS_FROM_EVENTS.to_string());
    }

    let replicas = rec
        .pods
        .iter()
        .map(|(name, life)| timeline::ReplicaLife {
            name: name.clone(),
            started_s: life.created_unix.map(rel),
            ready_s: life.ready_unix.map(rel),
            first_served_s: None,
            stopped_s: life.deleted_unix.map(rel),
        })
        .collect();

    let mut missing: Vec<String> = rec
        .missing
        .iter()
        .map(|(input, why)| format!("{input}: {why}"))
        .collect();
    if record.is_some() {
        if rec.signals.is_empty() {
            missing.push(
                "signals: no trigger readings (the scaler's /explain was not read; give --scaler-url)".into(),
            );
        }
        if rec.settings.is_none() {
            missing.push("settings: neither the ScaledObject nor the HPA spec was readable".into());
        }
    }
    BuiltTimeline {
        timeline: timeline::Timeline {
            samples: samples.to_vec(),
            signals,
            decisions,
            replicas,
            load_end_s: Some(load_end_s),
            settings,
        },
        decisions_from,
        missing,
    }
}

/// The live view's scaling line: the intervals seen so far, analysed as each one closes (decisions are the desired
/// replica changes the intervals carry, at the end of the first interval showing them).
#[derive(Debug, Default)]
pub struct LivePhase {
    samples: Vec<timeline::Sample>,
    observations: Vec<TimelinePoint>,
    slo: Option<timeline::Slo>,
}

impl LivePhase {
    pub fn new(slo: Option<timeline::Slo>) -> LivePhase {
        LivePhase {
            slo,
            ..LivePhase::default()
        }
    }

    /// Add a closed interval; the phase in progress after it, if an event is open.
    pub fn push(&mut self, stats: &crate::stats::IntervalStats) -> Option<String> {
        self.samples.push(super::scaling_input::sample(stats));
        if let Some(snapshot) = &stats.replicas {
            self.observations.push(TimelinePoint {
                t_s: stats.end_s,
                snapshot: snapshot.clone(),
            });
        }
        let built = build_from(&self.samples, &self.observations, None, 0.0, f64::INFINITY);
        timeline::phase_in_progress(
            &built.timeline,
            stats.end_s,
            self.slo.as_ref(),
            &timeline::Options::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReplicaSnapshot;
    use crate::monitor::record::{PodLife, RecordedDecision};

    const START: f64 = 1_700_000_000.0;

    fn point(t_s: f64, desired: u32, ready: u32) -> TimelinePoint {
        TimelinePoint {
            t_s,
            snapshot: ReplicaSnapshot {
                desired: Some(desired),
                current: Some(desired),
                ready: Some(ready),
                detail: None,
                source: "kubernetes".into(),
            },
        }
    }

    /// One-second samples: p95 800 ms from 2 s to 6 s (SLO p95<500ms broken), fast otherwise; 1 -> 3 replicas.
    fn samples(until: u32) -> Vec<timeline::Sample> {
        (0..until)
            .map(|i| {
                let t = f64::from(i);
                let slow = (2.0..6.0).contains(&t);
                timeline::Sample {
                    start_s: t,
                    end_s: t + 1.0,
                    offered_rate: 100.0,
                    achieved_rate: 100.0,
                    latency: timeline::Percentiles {
                        p95_s: Some(if slow { 0.8 } else { 0.01 }),
                        ..Default::default()
                    },
                    requests: 100,
                    // The replicas observed by each interval's end (see `observations`).
                    desired: Some(if t + 1.0 >= 3.5 { 3 } else { 1 }),
                    ready: Some(if t + 1.0 >= 5.5 { 3 } else { 1 }),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn observations() -> Vec<TimelinePoint> {
        vec![
            point(0.0, 1, 1),
            point(2.5, 1, 1),
            point(3.5, 3, 1),
            point(5.5, 3, 3),
            point(12.0, 3, 3),
        ]
    }

    fn record() -> ScalingRecord {
        let mut r = ScalingRecord {
            decisions: vec![
                // A previous run's event is ignored.
                RecordedDecision {
                    at_unix: START - 100.0,
                    to: 5,
                    reason: "old".into(),
                },
                RecordedDecision {
                    at_unix: START + 3.1,
                    to: 3,
                    reason: "external metric s0-request-rate(&LabelSelector{...}) above target"
                        .into(),
                },
            ],
            ..ScalingRecord::default()
        };
        for (name, created, ready) in [("c-a", -50.0, -40.0), ("c-b", 3.2, 4.6), ("c-c", 3.2, 4.8)]
        {
            r.pods.insert(
                name.into(),
                PodLife {
                    created_unix: Some(START + created),
                    ready_unix: Some(START + ready),
                    deleted_unix: None,
                },
            );
        }
        r.settings = Some(timeline::Settings {
            trigger_windows: [("request-rate".to_string(), 30.0)].into(),
            polling_interval_s: Some(1.0),
            ..Default::default()
        });
        r
    }

    #[test]
    fn decisions_come_from_events_and_ready_from_the_pods() {
        let built = build_from(&samples(14), &observations(), Some(&record()), START, 8.0);
        let tl = &built.timeline;
        assert_eq!(built.decisions_from.as_deref(), Some(DECISIONS_FROM_EVENTS));
        assert_eq!(tl.decisions.len(), 1, "{:?}", tl.decisions);
        let d = &tl.decisions[0];
        assert!((d.t_s - 3.1).abs() < 1e-6, "{d:?}");
        assert_eq!((d.from, d.to), (1, 3));
        assert_eq!(d.trigger.as_deref(), Some("request-rate"));
        let slo = timeline::Slo::parse("p95<500ms").unwrap();
        let a = timeline::analyse(tl, Some(&slo), &timeline::Options::default());
        assert_eq!(a.events.len(), 1, "{:?}", a.events);
        let e = &a.events[0];
        let at = |name: timeline::PhaseName| e.phases.iter().find(|p| p.name == name).unwrap().at_s;
        assert_eq!(at(timeline::PhaseName::Demand), Some(2.0));
        assert!((at(timeline::PhaseName::Decision).unwrap() - 3.1).abs() < 1e-6);
        // The second new pod's Ready transition, not the observation at 5.5 s.
        assert!((at(timeline::PhaseName::Ready).unwrap() - 4.8).abs() < 1e-6);
        let sum: f64 = e.phases.iter().filter_map(|p| p.duration_s).sum();
        assert!((sum - e.total_s.unwrap()).abs() < 1e-9, "{e:?}");
        assert!(
            built.missing.iter().any(|m| m.starts_with("signals:")),
            "{:?}",
            built.missing
        );
    }

    #[test]
    fn forbidden_events_fall_back_to_the_observations_and_say_so() {
        let mut r = record();
        r.decisions.clear();
        r.pods.clear();
        r.scale_times_unix = vec![START + 3.2];
        r.note("events", Err("events list: 403 events is forbidden".into()));
        r.note("pods", Err("pods list: 403 pods is forbidden".into()));
        let built = build_from(&samples(14), &observations(), Some(&r), START, 8.0);
        assert_eq!(
            built.decisions_from.as_deref(),
            Some(DECISIONS_FROM_OBSERVATIONS)
        );
        assert!(
            built
                .missing
                .iter()
                .any(|m| m.starts_with("events: ") && m.contains("403")),
            "{:?}",
            built.missing
        );
        assert!(
            built.missing.iter().any(|m| m.starts_with("pods: ")),
            "{:?}",
            built.missing
        );
        let d = &built.timeline.decisions;
        // lastScaleTime (3.2 s) lies between the observations at 2.5 s and 3.5 s: it times the step.
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            (d[0].t_s - 3.2).abs() < 1e-6 && (d[0].from, d[0].to) == (1, 3),
            "{d:?}"
        );
        let slo = timeline::Slo::parse("p95<500ms").unwrap();
        let a = timeline::analyse(&built.timeline, Some(&slo), &timeline::Options::default());
        let e = &a.events[0];
        let ready = e
            .phases
            .iter()
            .find(|p| p.name == timeline::PhaseName::Ready)
            .unwrap();
        // Without pods, ready is the end of the first interval with 3 ready (observed at 5.5 s: the interval 5-6).
        assert_eq!(ready.at_s, Some(6.0));
        assert!(e.under_provisioned_s > 0.0);
    }

    #[test]
    fn without_events_a_step_is_timed_by_the_first_observation_showing_it() {
        let built = build_from(&samples(14), &observations(), None, START, 8.0);
        let d = &built.timeline.decisions;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].t_s, 3.5);
        assert!(
            built.missing.is_empty(),
            "no record, nothing claimed: {:?}",
            built.missing
        );
    }

    #[test]
    fn the_live_line_names_the_phase_in_progress() {
        use crate::stats::IntervalStats;
        let mut live = LivePhase::new(Some(timeline::Slo::parse("p95<500ms").unwrap()));
        let mut lines = Vec::new();
        for (i, s) in samples(5).iter().enumerate() {
            let mut stats: IntervalStats = serde_json::from_value(serde_json::json!({
                "index": i, "start_s": s.start_s, "end_s": s.end_s, "stage": null, "target_rate": 100.0,
                "scheduled": 100, "sent": 100, "completed": 100, "achieved_rate": 100.0, "ok": 100, "errors": 0,
                "errors_by_class": {}, "dropped": 0, "in_flight": 0,
                "latency": {"mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.0,
                            "p95_ms": s.latency.p95_s.unwrap() * 1000.0, "p99_ms": 1.0, "p99_9_ms": 1.0,
                            "max_ms": 1.0},
                "served_by": {}, "self_check": {"schedule_lag_p99_ms": 0.0, "cpu_cores": 0.0,
                                                "cores_available": 1.0, "saturated": false}
            }))
            .expect("interval stats");
            stats.replicas = Some(point(s.end_s, if i >= 3 { 3 } else { 1 }, 1).snapshot);
            lines.push(live.push(&stats));
        }
        assert_eq!(lines[0], None);
        // SLO broken from 2 s: waiting for the signal/decision, then (decision at 4 s) for the new replicas.
        let last = lines[4].as_deref().expect("an event in progress");
        assert!(last.contains("readiness"), "{last}");
    }
}
