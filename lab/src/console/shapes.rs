//! A run's live data as the console shows it: each interval as a chart sample, decisions on the load's clock, scale
//! events, and the report's scaling phases as spans.

use super::api::{EndpointSample, PhaseSpan, Replicas, Sample, ScaleEvent, TriggerReading};
use crate::run::LiveInterval;
use crate::view::DecisionRecord;

/// One interval as the console charts it.
pub(super) fn sample(live: &LiveInterval<'_>, rate_multiplier: f64) -> Sample {
    let s = live.stats;
    let decision = live.last_decision;
    let replicas = match live.pool {
        Some(p) => Replicas {
            desired: decision.map(|d| d.desired),
            current: Some(p.current),
            ready: Some(p.ready),
            draining: Some(p.draining),
        },
        None => Replicas {
            desired: decision.map(|d| d.desired),
            current: decision.map(|d| d.current),
            ready: decision.map(|d| d.ready),
            draining: None,
        },
    };
    let current = replicas.current.unwrap_or(1).max(1);
    let triggers: Vec<TriggerReading> = decision
        .map(|d| {
            d.metrics
                .iter()
                .map(|m| TriggerReading {
                    name: m.name.clone(),
                    value: m.value,
                    target: m.target,
                    ratio: m.value.filter(|_| m.target > 0.0).map(|v| {
                        if m.metric_type == "Value" {
                            v / m.target
                        } else {
                            v / (m.target * f64::from(current))
                        }
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let backlog = triggers
        .iter()
        .find(|t| t.name.contains("backlog"))
        .and_then(|t| t.value);
    Sample {
        t_s: round3(s.end_s),
        offered_rps: s.target_rate,
        achieved_rps: s.achieved_rate,
        ok: s.ok,
        errors: s.errors,
        dropped: s.dropped,
        in_flight: s.in_flight,
        errors_by_class: s.errors_by_class.clone(),
        latency_ms: (&s.latency).into(),
        endpoints: s
            .endpoints
            .iter()
            .map(|(path, e)| {
                (
                    path.clone(),
                    EndpointSample {
                        rps: e.rps,
                        errors: e.errors,
                        latency_ms: (&e.latency).into(),
                    },
                )
            })
            .collect(),
        replicas,
        triggers,
        backlog,
        rate_multiplier,
        phase: live.phase.map(str::to_string),
    }
}

/// A decision with `t_s` since the load start (the log's is since the control loop's epoch).
pub(super) fn rebased(d: &DecisionRecord, load_start_s: f64) -> DecisionRecord {
    DecisionRecord {
        t_s: round3(d.t_s - load_start_s),
        ..d.clone()
    }
}

pub(super) fn scale_events(decisions: &[DecisionRecord]) -> Vec<ScaleEvent> {
    decisions
        .iter()
        .filter(|d| d.desired != d.current)
        .map(|d| ScaleEvent {
            t_s: d.t_s,
            from: d.current,
            to: d.desired,
        })
        .collect()
}

/// The scaling report's phases (`scaling.events[].phases[]`): each spans the wait it added, ending at its milestone.
pub(super) fn phases(report: &serde_json::Value) -> Vec<PhaseSpan> {
    let Some(events) = report.pointer("/scaling/events").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    for event in events {
        let id = event.get("id").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        let kind = match event.get("kind").and_then(|v| v.as_str()) {
            Some("scale_up") => "scale-up",
            _ => "scale-down",
        };
        for phase in event
            .get("phases")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            let at = phase.get("at_s").and_then(|v| v.as_f64());
            let duration = phase.get("duration_s").and_then(|v| v.as_f64());
            let name = phase.get("name").and_then(|v| v.as_str());
            if let (Some(at), Some(duration), Some(name)) = (at, duration, name) {
                spans.push(PhaseSpan {
                    event: id,
                    kind: kind.into(),
                    phase: name.into(),
                    start_s: round3(at - duration),
                    end_s: round3(at),
                });
            }
        }
    }
    spans
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_span_the_wait_each_milestone_added() {
        let report = serde_json::json!({"scaling": {"events": [{"id": 1, "kind": "scale_up", "phases": [
            {"name": "signal", "at_s": 4.0, "duration_s": 1.5},
            {"name": "decision", "at_s": null, "duration_s": null}
        ]}]}});
        assert_eq!(
            phases(&report),
            vec![PhaseSpan {
                event: 1,
                kind: "scale-up".into(),
                phase: "signal".into(),
                start_s: 2.5,
                end_s: 4.0
            }]
        );
        assert!(phases(&serde_json::json!({"scaling": null})).is_empty());
    }
}
