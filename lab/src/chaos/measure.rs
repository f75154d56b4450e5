//! What each lab fault cost. The load side — the requests lost between the fault and the recovery, by class, and the
//! recovery itself (the SLO held again for the hold window) — is the generator's one formula
//! (`load::chaos::measure`, shared with the cluster faults); this module adds what only the lab knows: the
//! replica it hit and what was in flight on it, the replacement's life, the scaler's return and the controller's
//! decisions meanwhile.

use std::time::{Duration, Instant};

use chaos_spec::ChaosAction;
use load::engine::RequestRecord;
use load::model::Outcome;
use load::report::{AutoscalerReaction, ChaosReport, FaultReport};
use timeline::Slo;

use super::FaultRecord;
use crate::replicas::Life;
use crate::view::DecisionRecord;

/// The run, as the measurements need it.
#[derive(Debug)]
pub struct Measured<'a> {
    /// The control loop's clock: the decisions' `t_s` zero.
    pub epoch: Instant,
    pub load_start: Instant,
    pub load_end: Instant,
    pub decisions: &'a [DecisionRecord],
    pub lives: &'a [Life],
    pub slo: &'a Slo,
    pub time_scale: f64,
}

pub use load::chaos::measure::hold;
use load::chaos::measure::{BUCKETS_PER_HOLD, lost_between, recovery, since};

type Entry = Result<FaultRecord, super::schedule::Missed>;

pub fn measure(records: &[Entry], log: &[RequestRecord], run: &Measured<'_>) -> ChaosReport {
    let hold = hold(run.time_scale);
    let bucket = hold / BUCKETS_PER_HOLD;
    let faults = records
        .iter()
        .map(|entry| match entry {
            Ok(record) => measure_one(record, log, run, hold, bucket),
            Err((spec, at, why)) => FaultReport::missed(spec, since(run.load_start, *at), why),
        })
        .collect();
    ChaosReport {
        slo: run.slo.to_string(),
        hold_s: hold.as_secs_f64(),
        bucket_s: bucket.as_secs_f64(),
        faults,
        thresholds: Vec::new(),
    }
}

fn measure_one(
    record: &FaultRecord,
    log: &[RequestRecord],
    run: &Measured<'_>,
    hold: Duration,
    bucket: Duration,
) -> FaultReport {
    let t0 = record.at;
    let after = |t: Instant| since(t0, t);
    let recovered = recovery(log, t0, run.load_end, run.slo, bucket);
    let last_end = log.iter().map(|r| r.ended).max().unwrap_or(t0);
    let window_end = recovered.map_or(last_end.max(t0), |r| t0 + r + hold);

    // --- the requests lost in the window, by class ----------------------------------------------------
    let counted = lost_between(log, t0, window_end);
    let (requests, failed, timed_out, dropped) = (
        counted.requests,
        counted.failed,
        counted.timed_out,
        counted.dropped,
    );
    let by_class = counted.by_class.clone();
    let lost = counted.total();

    // --- the replica it hit: what was open on it, what failed on it ------------------------------------
    let url = record.replica.as_ref().and_then(|h| h.url.as_deref());
    let on_target =
        |r: &&RequestRecord| url.is_some_and(|u| r.target.as_ref().is_some_and(|t| t.url == u));
    let in_flight = url.map(|_| {
        log.iter()
            .filter(on_target)
            .filter(|r| r.picked.is_some_and(|p| p < t0) && r.ended >= t0)
            .count() as u64
    });
    let failed_on_target = url.map(|_| {
        log.iter()
            .filter(on_target)
            .filter(|r| r.ended >= t0 && r.outcome.is_some_and(|o| o != Outcome::Ok))
            .count() as u64
    });

    let left = record.freeze.left;
    let picked_while_out = left.filter(|_| url.is_some()).map(|left| {
        let back = record.freeze.returned;
        log.iter()
            .filter(on_target)
            .filter(|r| {
                r.picked
                    .is_some_and(|p| p >= left && back.is_none_or(|b| p < b))
            })
            .count() as u64
    });

    // --- the replacement, or the return ----------------------------------------------------------------
    let first_served_by = |name: &str, from: Instant| {
        log.iter()
            .filter(|r| r.served_by.as_deref() == Some(name) && r.picked.is_some_and(|p| p >= from))
            .map(|r| r.ended)
            .min()
    };
    let (ready, serving, replacement) = match record.fault.action {
        ChaosAction::Kill | ChaosAction::Terminate => match replacement(record, run.lives) {
            Some(life) => {
                let ready = life.ready.expect("filtered");
                (
                    Some(ready),
                    first_served_by(&life.name, ready),
                    Some(life.name.clone()),
                )
            }
            None => (None, None, None),
        },
        ChaosAction::Freeze => {
            let back = record.freeze.returned;
            let name = record.replica.as_ref().map(|h| h.name.clone());
            let serving = match (back, &name) {
                (Some(b), Some(n)) => first_served_by(n, b),
                _ => None,
            };
            (back, serving, name)
        }
        ChaosAction::KillScaler | ChaosAction::FreezeScaler => {
            let serving = record.scaler_back.and_then(|back| {
                run.decisions
                    .iter()
                    .map(|d| (run.epoch + Duration::from_secs_f64(d.t_s), d))
                    .find(|(t, d)| *t >= back && d.metrics.iter().all(|m| !failing(&m.status)))
                    .map(|(t, _)| t)
            });
            (record.scaler_back, serving, Some("scaler".to_string()))
        }
        // Measured by the Kafka scenario (kafka::faults); here only its return.
        ChaosAction::StopBroker => (
            record.broker.as_ref().and_then(|b| b.back),
            None,
            Some("broker".to_string()),
        ),
        // Never injected by the lab (refused at the start): nothing replaced.
        ChaosAction::DeletePod
        | ChaosAction::EvictPod
        | ChaosAction::CordonNode
        | ChaosAction::DrainNode
        | ChaosAction::PartitionPod
        | ChaosAction::ScalerToZero => (None, None, None),
    };

    // --- the autoscaler meanwhile ----------------------------------------------------------------------
    let react_end = [Some(window_end), serving, ready]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(window_end);
    let autoscaler = reaction(run, t0, react_end);

    let total = log.len().max(1) as f64;
    FaultReport {
        at_s: since(run.load_start, t0),
        action: record.fault.action.to_string(),
        target: record.fault.target.to_string(),
        hit: record.hit.clone().ok(),
        error: record.hit.clone().err(),
        duration_s: record.duration.map(|d| d.as_secs_f64()),
        window_end_s: since(run.load_start, window_end),
        requests,
        lost,
        failed,
        timed_out,
        dropped,
        by_class,
        lost_pct_of_run: (lost as f64 / total * 100.0 * 1000.0).round() / 1000.0,
        in_flight_at_fault: in_flight,
        failed_on_target,
        left_targets_after_s: left.map(after),
        picked_while_out,
        recovered_after_s: recovered.map(|d| d.as_secs_f64()),
        slo_hurt: recovered.is_none_or(|d| !d.is_zero()),
        replacement_ready_after_s: ready.map(after),
        replacement_serving_after_s: serving.map(after),
        replacement,
        autoscaler,
        ..FaultReport::default()
    }
}

/// A trigger's status in the decision log says it could not be read (or stood in for by the fallback).
fn failing(status: &str) -> bool {
    status.starts_with("error") || status.starts_with("fallback")
}

/// The replica that took a killed or terminated one's place: the first started after the fault (after the restart
/// back-off for a kill: a replica the controller added meanwhile is a scale-up, not the replacement) that got ready.
pub(crate) fn replacement<'a>(record: &FaultRecord, lives: &'a [Life]) -> Option<&'a Life> {
    let from = match (record.fault.action, record.duration) {
        (ChaosAction::Kill, Some(backoff)) => record.at + backoff,
        _ => record.asked,
    };
    lives
        .iter()
        .filter(|l| l.started >= from && l.ready.is_some())
        .min_by_key(|l| l.started)
}

/// The controller's steps from `from` to `to`.
fn reaction(run: &Measured<'_>, from: Instant, to: Instant) -> AutoscalerReaction {
    reaction_in(run.decisions, run.epoch, from, to)
}

/// The steps of `decisions` (timed from `epoch`) from `from` to `to`; also for the Kafka scenario's faults.
pub(crate) fn reaction_in(
    decisions: &[DecisionRecord],
    epoch: Instant,
    from: Instant,
    to: Instant,
) -> AutoscalerReaction {
    let mut a = AutoscalerReaction::default();
    for d in decisions {
        let t = epoch + Duration::from_secs_f64(d.t_s);
        if t < from || t > to {
            continue;
        }
        a.steps += 1;
        if d.metrics.iter().any(|m| m.status.starts_with("error")) {
            a.failed_readings += 1;
        }
        if let Some(m) = d.metrics.iter().find(|m| m.status.starts_with("fallback")) {
            a.fallback_steps += 1;
            if a.fallback_first_after_s.is_none() {
                a.fallback_first_after_s = Some(since(from, t));
                a.fallback_detail = Some(format!("{}: {}", m.name, m.status));
            }
        }
        if d.metrics
            .iter()
            .any(|m| m.metric_type == "Value" && m.status.starts_with("error"))
        {
            a.value_errors += 1;
        }
        if d.desired != d.current {
            a.changes.push(format!(
                "{:.1}s {} -> {}: {}",
                since(from, t),
                d.current,
                d.desired,
                d.reason
            ));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaos_spec::ChaosTarget;
    use load::targets::Target;

    use super::*;
    use crate::chaos::Fault;
    use crate::replicas::{FreezeOutcome, Hit};
    use crate::view::MetricRecord;

    const A: &str = "http://127.0.0.1:1001";
    const B: &str = "http://127.0.0.1:1002";

    /// A request every 100 ms from 0 to 20 s, alternating A and B, 300 ms each, all ok; `edit` changes one.
    fn log(base: Instant, edit: impl Fn(f64, &mut RequestRecord)) -> Vec<RequestRecord> {
        let (a, b) = (
            Arc::new(Target::parse(A).unwrap()),
            Arc::new(Target::parse(B).unwrap()),
        );
        (0..200)
            .map(|i| {
                let t = i as f64 / 10.0;
                let start = base + Duration::from_secs_f64(t);
                let (target, name) = if i % 2 == 0 {
                    (&a, "consumer-1")
                } else {
                    (&b, "consumer-2")
                };
                let mut r = RequestRecord {
                    scheduled: start,
                    picked: Some(start),
                    ended: start + Duration::from_millis(300),
                    target: Some(target.clone()),
                    served_by: Some(name.to_string()),
                    outcome: Some(Outcome::Ok),
                    latency: Duration::from_millis(300),
                };
                edit(t, &mut r);
                r
            })
            .collect()
    }

    fn record(base: Instant, action: ChaosAction, at_s: f64, duration: Option<f64>) -> FaultRecord {
        let at = base + Duration::from_secs_f64(at_s);
        FaultRecord {
            fault: Fault {
                action,
                target: ChaosTarget::Replica,
                duration: duration.map(Duration::from_secs_f64),
            },
            asked: at,
            at,
            hit: Ok("consumer-1 (pid 1)".into()),
            replica: Some(Hit {
                id: 1,
                name: "consumer-1".into(),
                pid: 1,
                url: Some(A.into()),
            }),
            freeze: FreezeOutcome::default(),
            scaler_back: None,
            broker: None,
            duration: duration.map(Duration::from_secs_f64),
            lines: Vec::new(),
        }
    }

    fn run<'a>(
        base: Instant,
        decisions: &'a [DecisionRecord],
        lives: &'a [Life],
        slo: &'a Slo,
    ) -> Measured<'a> {
        Measured {
            epoch: base,
            load_start: base,
            load_end: base + Duration::from_secs(20),
            decisions,
            lives,
            slo,
            time_scale: 0.2,
        }
    }

    #[test]
    fn a_kill_loses_exactly_the_requests_open_on_the_replica_and_recovers_after_them() {
        let base = Instant::now();
        let at = Duration::from_secs(5);
        // Requests to A still open at 5 s end then, reset; none to A after it (it left the targets).
        let log: Vec<_> = log(base, |t, r| {
            let on_a = r.target.as_ref().unwrap().url == A;
            if on_a && t < 5.0 && t + 0.3 > 5.0 {
                r.ended = base + at + Duration::from_millis(1);
                r.outcome = Some(Outcome::OtherError);
                r.served_by = None;
            }
            if on_a && t >= 5.0 {
                r.target = Some(Arc::new(Target::parse(B).unwrap()));
                r.served_by = Some("consumer-2".into());
            }
            if t >= 7.0 && on_a {
                r.served_by = Some("consumer-3".into());
            }
        })
        .into_iter()
        .collect();
        let lives = vec![Life {
            id: 3,
            name: "consumer-3".into(),
            started: base + Duration::from_secs(6),
            ready: Some(base + Duration::from_millis(6500)),
            stopped: None,
        }];
        let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
        let entries = vec![Ok(record(base, ChaosAction::Kill, 5.0, Some(1.0)))];
        let report = measure(&entries, &log, &run(base, &[], &lives, &slo));
        assert_eq!((report.hold_s, report.bucket_s), (1.0, 0.2));
        let f = &report.faults[0];
        // The request of 4.8 s was the one to A open at 5 s (A gets the even tenths).
        assert_eq!(f.in_flight_at_fault, Some(1));
        assert_eq!(f.failed_on_target, Some(1));
        assert_eq!((f.lost, f.failed, f.timed_out, f.dropped), (1, 1, 0, 0));
        assert_eq!(f.by_class.get("other_error"), Some(&1));
        assert!((f.lost_pct_of_run - 0.5).abs() < 1e-9);
        // The error made the first bucket miss errors<1%; from the second one on the SLO held.
        assert!(f.slo_hurt);
        assert_eq!(f.recovered_after_s, Some(0.2));
        assert!((f.window_end_s - 6.2).abs() < 1e-6, "{}", f.window_end_s);
        // Replaced by the replica started after the back-off, ready at 6.5 s, first answering at 7.3 s.
        assert_eq!(f.replacement.as_deref(), Some("consumer-3"));
        assert_eq!(f.replacement_ready_after_s, Some(1.5));
        assert_eq!(f.replacement_serving_after_s, Some(2.3));
    }

    #[test]
    fn hung_requests_hurt_while_they_hang_and_a_drop_is_lost() {
        let base = Instant::now();
        // From 5 s to 7 s the requests to A hang and end at 7 s, ok but slow (a freeze); one request is dropped at 8 s.
        let log = log(base, |t, r| {
            let on_a = r.target.as_ref().unwrap().url == A;
            if on_a && (5.0..7.0).contains(&t) {
                r.ended = base + Duration::from_secs(7);
                r.latency = Duration::from_secs_f64(7.0 - t);
            }
            if (t - 8.0).abs() < 1e-9 {
                r.outcome = None;
                r.picked = None;
                r.target = None;
                r.ended = r.scheduled;
            }
        });
        let slo = Slo::parse("p95<500ms").unwrap();
        let mut rec = record(base, ChaosAction::Freeze, 5.0, Some(2.0));
        rec.freeze = FreezeOutcome {
            left: Some(base + Duration::from_secs(6)),
            continued: Some(base + Duration::from_secs(7)),
            returned: Some(base + Duration::from_secs(7)),
        };
        let report = measure(&[Ok(rec)], &log, &run(base, &[], &[], &slo));
        let f = &report.faults[0];
        // Nothing failed, but the hung requests broke p95 until they ended at 7 s, and the drop at 8 s broke a bucket
        // again: the SLO held for the whole hold window only from 8.2 s.
        assert_eq!((f.failed, f.timed_out, f.dropped, f.lost), (0, 0, 1, 1));
        assert_eq!(f.failed_on_target, Some(0));
        assert_eq!(f.recovered_after_s, Some(3.2));
        assert_eq!(f.left_targets_after_s, Some(1.0));
        assert_eq!(f.replacement_ready_after_s, Some(2.0));
        // Requests "picked" A while it was out in this synthetic log: the even tenths from 6.0 to 6.9 s.
        assert_eq!(f.picked_while_out, Some(5));
    }

    #[test]
    fn the_autoscaler_reaction_counts_fallback_and_value_errors_in_the_window() {
        let base = Instant::now();
        let metric = |name: &str, kind: &str, status: &str| MetricRecord {
            name: name.into(),
            metric_type: kind.into(),
            value: None,
            target: 1.0,
            active: true,
            proposal: None,
            status: status.into(),
        };
        let step = |t_s: f64, current: u32, desired: u32, statuses: [&str; 2]| DecisionRecord {
            t_s,
            current,
            ready: current,
            desired,
            active: true,
            winner: None,
            raw: None,
            reason: format!("scale {current} -> {desired}"),
            metrics: vec![
                metric("backlog", "AverageValue", statuses[0]),
                metric("latency", "Value", statuses[1]),
            ],
        };
        let decisions = vec![
            step(4.0, 1, 1, ["ok", "ok"]),
            step(5.5, 1, 1, ["error x1: refused", "error x1: refused"]),
            step(
                6.5,
                1,
                3,
                ["fallback to 3 after 2 failures", "error x2: refused"],
            ),
            step(
                7.5,
                3,
                3,
                ["fallback to 3 after 3 failures", "error x3: refused"],
            ),
            step(8.5, 3, 3, ["ok", "ok"]),
        ];
        let mut rec = record(base, ChaosAction::KillScaler, 5.0, Some(3.0));
        rec.replica = None;
        rec.scaler_back = Some(base + Duration::from_secs(8));
        let slo = Slo::parse("p95<500ms").unwrap();
        let log = log(base, |_, _| {});
        let report = measure(&[Ok(rec)], &log, &run(base, &decisions, &[], &slo));
        let f = &report.faults[0];
        assert!(!f.slo_hurt);
        assert_eq!(f.replacement_ready_after_s, Some(3.0));
        assert_eq!(
            f.replacement_serving_after_s,
            Some(3.5),
            "the first clean step after the return"
        );
        let a = &f.autoscaler;
        assert_eq!(
            (a.steps, a.failed_readings, a.fallback_steps, a.value_errors),
            (4, 3, 2, 3)
        );
        assert_eq!(a.fallback_first_after_s, Some(1.5));
        assert_eq!(
            a.fallback_detail.as_deref(),
            Some("backlog: fallback to 3 after 2 failures")
        );
        assert_eq!(a.changes, vec!["1.5s 1 -> 3: scale 1 -> 3".to_string()]);
    }
}
