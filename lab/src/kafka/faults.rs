//! Chaos in the Kafka scenario: which faults it takes (`stop-broker`, and the replica faults on Kafka-mode replicas),
//! the group's lag sampled beside the load, and each fault measured by what the Kafka side saw: the broker's stop and
//! return, the producer's sends, acks and failures in the fault's window (its per-interval rows), the lag's peak, the
//! controller's steps, and `verify --processed` at the end (the run's messages lost and duplicated, reused from
//! `kafka_load::verify_report`). There is no request log here: a fault's `lost` counts messages.
//!
//! Recovered = the first lag sample, once the fault is over (the broker serves again, the frozen replica is back, the
//! replacement is ready), from which the lag stayed at or below max(its level at the fault, lagThreshold) for the
//! hold window: the backlog the fault built up has drained.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaos_spec::{ChaosAction, ChaosPlace, ChaosSpec};
use kafka_load::{ProduceReport, VerifyReport};
use load::report::{ChaosReport, FaultReport, KafkaFaultReport};

use crate::LabError;
use crate::chaos::FaultRecord;
use crate::chaos::measure::{hold, reaction_in, replacement};
use crate::chaos::schedule::Missed;
use crate::replicas::Life;
use crate::view::DecisionRecord;

/// The `--chaos` flags for a Kafka run: parsed and checked as a profile's entries (inside the load of `load`, profile
/// time), only the actions the scenario carries out, then time-scaled.
pub(super) fn parse_faults(
    flags: &[String],
    load: Duration,
    time_scale: f64,
) -> Result<Vec<ChaosSpec>, LabError> {
    flags
        .iter()
        .map(|text| {
            let spec = ChaosSpec::parse_flag(text).map_err(|e| LabError::Usage(e.to_string()))?;
            // Every lab action, the broker's included, works on the Kafka scenario's processes.
            spec.action
                .check_place(ChaosPlace::Lab)
                .map_err(|e| LabError::Usage(format!("--chaos {text:?}: {e}")))?;
            spec.check(Some(load)).map_err(|(field, reason)| {
                LabError::Usage(format!("--chaos {text:?}: {field} {reason}"))
            })?;
            Ok(spec.scale_time(time_scale))
        })
        .collect()
}

/// `stop-broker` in a run without a broker: a usage error before anything starts.
pub fn refuse_broker_faults(faults: &[ChaosSpec]) -> Result<(), LabError> {
    match faults.iter().find(|f| f.action.on_broker()) {
        Some(f) => Err(LabError::Usage(format!(
            "--chaos / chaos: {} {}: stop-broker needs a Kafka broker: run it with --scenario kafka",
            f.action,
            f.target()
        ))),
        None => Ok(()),
    }
}

/// A Kafka run, as the measurements need it.
pub(super) struct KafkaRun<'a> {
    /// The control loop's clock: the decisions' `t_s` zero.
    pub epoch: Instant,
    /// When the producer started: its intervals' `t_s` zero, and the load's start.
    pub produce_start: Instant,
    pub produce: Option<&'a ProduceReport>,
    pub verify: Option<&'a VerifyReport>,
    pub lag: &'a [(Instant, Option<u64>)],
    pub lag_every: Duration,
    pub decisions: &'a [DecisionRecord],
    pub lives: &'a [Life],
    pub lag_threshold: f64,
    pub time_scale: f64,
}

type Entry = Result<FaultRecord, Missed>;

/// The `chaos` section of a Kafka run (thresholds are judged by the caller, `ChaosRun::finish_with`).
pub(super) fn measure(records: &[Entry], run: &KafkaRun<'_>) -> ChaosReport {
    let hold = hold(run.time_scale);
    let faults = records
        .iter()
        .map(|entry| match entry {
            Ok(record) => measure_one(record, run, hold),
            Err((spec, at, why)) => missed(spec, *at, why, run),
        })
        .collect();
    ChaosReport {
        slo: format!(
            "group lag <= max(lag at the fault, lagThreshold {})",
            run.lag_threshold
        ),
        hold_s: hold.as_secs_f64(),
        bucket_s: run.lag_every.as_secs_f64(),
        faults,
        thresholds: Vec::new(),
    }
}

fn secs(origin: Instant, t: Instant) -> f64 {
    (t.saturating_duration_since(origin).as_secs_f64() * 1000.0).round() / 1000.0
}

/// The run's figures, the same for every fault: the producer's totals and verify's findings.
fn run_figures(run: &KafkaRun<'_>) -> KafkaFaultReport {
    let mut k = KafkaFaultReport::default();
    if let Some(p) = run.produce {
        k.sent = p.kafka.sent;
        k.acked = p.kafka.acked;
        k.producer_retries = p.kafka.retries;
        k.producer_errors = p.kafka.errors.clone();
    }
    let failed = run.produce.map_or(0, |p| p.kafka.failed);
    if let Some(v) = run.verify {
        let unique = |received: u64, duplicates: u64| received.saturating_sub(duplicates);
        k.in_topic = v
            .delivered
            .producers
            .iter()
            .map(|p| unique(p.received, p.duplicates))
            .sum();
        k.processed = v.processed.as_ref().map_or(0, |c| {
            c.producers
                .iter()
                .map(|p| unique(p.received, p.duplicates))
                .sum()
        });
        k.verify_lost = v.delivered.lost + v.processed.as_ref().map_or(0, |c| c.lost);
        k.duplicates_in_topic = v.delivered.duplicates;
        k.duplicates_processed = v.processed.as_ref().map_or(0, |c| c.duplicates);
        k.verify_verdict = v.verdict.clone();
        k.not_processed = k.in_topic.saturating_sub(k.processed);
        // The last readable lag sample: after it the replicas stop, so the backlog stays as it was.
        k.backlog_at_end = run.lag.iter().rev().find_map(|(_, v)| *v);
        k.lost_messages = k.sent.saturating_sub(k.in_topic)
            + k.not_processed
                .saturating_sub(k.backlog_at_end.unwrap_or(0));
        k.lost_acknowledged = k.sent.saturating_sub(k.in_topic).saturating_sub(failed);
    } else {
        k.verify_verdict = "verify did not run".into();
    }
    k
}

fn missed(spec: &ChaosSpec, at: Instant, why: &str, run: &KafkaRun<'_>) -> FaultReport {
    FaultReport {
        kafka: Some(run_figures(run)),
        ..FaultReport::missed(spec, secs(run.produce_start, at), why)
    }
}

fn measure_one(record: &FaultRecord, run: &KafkaRun<'_>, hold: Duration) -> FaultReport {
    let t0 = record.at;
    let after = |t: Instant| secs(t0, t);
    let broker = record.broker.as_ref();
    // When the fault was over, and who is back.
    let (over, replacement) = match record.fault.action {
        ChaosAction::StopBroker => (broker.and_then(|b| b.back), Some("broker".to_string())),
        ChaosAction::Freeze => (
            record.freeze.returned,
            record.replica.as_ref().map(|h| h.name.clone()),
        ),
        ChaosAction::KillScaler | ChaosAction::FreezeScaler => {
            (record.scaler_back, Some("scaler".to_string()))
        }
        _ => {
            let next = replacement(record, run.lives);
            (next.and_then(|l| l.ready), next.map(|l| l.name.clone()))
        }
    };

    // --- the lag: at the fault, the recovery, the peak -------------------------------------------------
    let lag_at_fault = run
        .lag
        .iter()
        .rfind(|(t, v)| *t <= t0 && v.is_some())
        .and_then(|(_, v)| *v);
    let bound = (lag_at_fault.unwrap_or(0) as f64).max(run.lag_threshold);
    let last_sample = run.lag.last().map_or(t0, |(t, _)| *t);
    let recovered_at = over.and_then(|over| {
        run.lag
            .iter()
            .filter(|(t, _)| *t >= over.max(t0))
            .map(|(t, _)| *t)
            .find(|start| {
                *start + hold <= last_sample
                    && run
                        .lag
                        .iter()
                        .filter(|(t, _)| *t >= *start && *t <= *start + hold)
                        .all(|(_, v)| v.is_some_and(|v| v as f64 <= bound))
            })
    });
    let window_end = recovered_at.map_or(last_sample.max(t0), |r| r + hold);
    let in_window = |t: Instant| t >= t0 && t <= window_end;
    // The first sample at the highest lag.
    let peak = run
        .lag
        .iter()
        .filter(|(t, v)| in_window(*t) && v.is_some())
        .fold(
            None,
            |best: Option<&(Instant, Option<u64>)>, s| match best {
                Some(b) if b.1 >= s.1 => Some(b),
                _ => Some(s),
            },
        );
    let hurt_by_lag = run.lag.iter().any(|(t, v)| {
        *t >= t0 && recovered_at.is_none_or(|r| *t < r) && v.is_none_or(|v| v as f64 > bound)
    });

    // --- the producer in the window: its rows that ended in it ----------------------------------------
    let mut k = run_figures(run);
    let rows: Vec<_> = run
        .produce
        .map(|p| p.kafka.intervals.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| (run.produce_start + Duration::from_secs_f64(r.t_s), r))
        .collect();
    for (_, r) in rows.iter().filter(|(end, _)| in_window(*end)) {
        k.window_sent += r.sent;
        k.window_acked += r.acked;
        k.window_failed += r.failed;
        if r.acked > 0 {
            k.window_ack_max_ms = Some(k.window_ack_max_ms.unwrap_or(0.0).max(r.ack_max_ms));
        }
    }
    // Serving: the broker's first producer interval with acks after its return.
    let serving = match record.fault.action {
        ChaosAction::StopBroker => over.and_then(|back| {
            rows.iter()
                .find(|(end, r)| *end >= back && r.acked > 0)
                .map(|(end, _)| *end)
        }),
        _ => None,
    };
    k.lag_at_fault = lag_at_fault;
    k.lag_peak = peak.and_then(|(_, v)| *v);
    k.lag_peak_after_s = peak.map(|(t, _)| after(*t));
    if let Some(b) = broker {
        k.broker = Some(b.bootstrap.clone());
        k.broker_exited_after_s = b.exited.map(after);
        k.broker_killed = b.killed;
        k.broker_down_s = match (b.exited, b.back) {
            (Some(e), Some(back)) => Some(secs(e, back)),
            _ => None,
        };
        k.broker_serving_after_s = b.back.map(after);
        k.broker_error = b.error.clone();
    }

    let react_end = [Some(window_end), over]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(window_end);
    let sent = k.sent.max(1) as f64;
    FaultReport {
        at_s: secs(run.produce_start, t0),
        action: record.fault.action.to_string(),
        target: record.fault.target.to_string(),
        hit: record.hit.clone().ok(),
        error: record.hit.clone().err(),
        duration_s: record.duration.map(|d| d.as_secs_f64()),
        window_end_s: secs(run.produce_start, window_end),
        requests: k.window_sent,
        lost: k.lost_messages,
        failed: k.window_failed,
        timed_out: 0,
        dropped: 0,
        by_class: BTreeMap::new(),
        lost_pct_of_run: (k.lost_messages as f64 / sent * 100.0 * 1000.0).round() / 1000.0,
        in_flight_at_fault: None,
        failed_on_target: None,
        left_targets_after_s: record.freeze.left.map(after),
        picked_while_out: None,
        recovered_after_s: recovered_at.map(after),
        slo_hurt: record.fault.action == ChaosAction::StopBroker || hurt_by_lag,
        replacement_ready_after_s: over.map(after),
        replacement_serving_after_s: serving.map(after),
        replacement,
        autoscaler: reaction_in(run.decisions, run.epoch, t0, react_end),
        kafka: Some(k),
        ..FaultReport::default()
    }
}

#[cfg(test)]
mod tests {
    use chaos_spec::ChaosTarget;
    use kafka_load::report::{KafkaInterval, KafkaSection, LatencyMs, ProduceSettings};
    use kafka_load::verify::{ProducerCheck, TopicCheck};

    use super::*;
    use crate::chaos::threshold::Threshold;
    use crate::chaos::{BrokerOutcome, Fault};
    use crate::replicas::FreezeOutcome;

    #[test]
    fn kafka_faults_are_checked_and_time_scaled_and_http_refuses_stop_broker() {
        let flags = ["at=10s,action=stop-broker,duration=5s".to_string()];
        let faults = parse_faults(&flags, Duration::from_secs(30), 0.2).unwrap();
        assert_eq!(faults[0].target(), ChaosTarget::Broker);
        assert_eq!(
            (faults[0].at, faults[0].duration),
            (Duration::from_secs(2), Some(Duration::from_secs(1)))
        );
        for (flag, wanted) in [
            (
                "at=40s,action=stop-broker,duration=5s",
                "not inside the load",
            ),
            ("at=10s,action=stop-broker", "required for stop-broker"),
            (
                "at=10s,action=stop-broker,target=replica,duration=5s",
                "allowed: broker",
            ),
            ("at=10s,action=delete-pod", "or kill here"),
        ] {
            let e = parse_faults(&[flag.to_string()], Duration::from_secs(30), 1.0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(wanted), "{flag}: {e}");
        }
        let e = refuse_broker_faults(&faults).unwrap_err().to_string();
        assert!(
            e.contains("stop-broker") && e.contains("--scenario kafka"),
            "{e}"
        );
        let kill = ChaosSpec::parse_flag("at=1s,action=kill").unwrap();
        assert!(refuse_broker_faults(&[kill]).is_ok());
    }

    fn produce(start_rows: &[(f64, u64, u64, u64, f64)], sent: u64, failed: u64) -> ProduceReport {
        ProduceReport {
            schema: String::new(),
            command: "produce".into(),
            profile: String::new(),
            test_run: "run-1".into(),
            producer: "lab".into(),
            started_at: String::new(),
            duration_s: 10.0,
            settings: ProduceSettings {
                brokers: String::new(),
                topic: "orders".into(),
                payload_bytes: 0,
                key_strategy: "none".into(),
                acks: "all".into(),
                compression: "none".into(),
                linger_ms: 5,
                batch_bytes: 1,
                pods: 1,
                pod_index: 0,
            },
            kafka: KafkaSection {
                scheduled: sent,
                sent,
                acked: sent - failed,
                failed,
                records_per_sec: 0.0,
                mb_per_sec: 0.0,
                ack_latency_ms: LatencyMs::default(),
                errors: BTreeMap::from([("MessageTimedOut".to_string(), failed)]),
                retries: 7,
                intervals: start_rows
                    .iter()
                    .map(|&(t_s, sent, acked, failed, max)| KafkaInterval {
                        t_s,
                        target_rate: 100.0,
                        sent,
                        acked,
                        failed,
                        records_per_sec: 0.0,
                        ack_p50_ms: 0.0,
                        ack_p99_ms: 0.0,
                        ack_max_ms: max,
                    })
                    .collect(),
            },
            thresholds: Vec::new(),
            interrupted: false,
            exit_code: 0,
            verdict: String::new(),
        }
    }

    fn topic(received: u64, lost: u64, duplicates: u64) -> TopicCheck {
        TopicCheck {
            topic: "orders".into(),
            records_read: received,
            skipped: 0,
            complete: true,
            producers: vec![ProducerCheck {
                producer: "lab".into(),
                received,
                expected: received + lost - duplicates,
                lost,
                duplicates,
                lost_ranges: Vec::new(),
                duplicated: Vec::new(),
            }],
            lost,
            duplicates,
            waited_s: None,
            readings: None,
        }
    }

    #[test]
    fn a_broker_stop_is_measured_from_the_lag_the_producer_and_verify() {
        let base = Instant::now();
        let at = |s: f64| base + Duration::from_secs_f64(s);
        // Lag every 0.5 s: 10 before the stop at 2 s, unreadable while the broker is down (2.5..4 s), 200 when it is
        // back at 4 s, draining to 5 from 6 s on.
        let lag: Vec<(Instant, Option<u64>)> = (0..24)
            .map(|i| {
                let t = i as f64 * 0.5;
                let v = match t {
                    t if t < 2.5 => Some(10),
                    t if t < 4.0 => None,
                    t if t < 6.0 => Some(200 - (t as u64 - 4) * 50),
                    _ => Some(5),
                };
                (at(t), v)
            })
            .collect();
        let record = FaultRecord {
            fault: Fault {
                action: ChaosAction::StopBroker,
                target: ChaosTarget::Broker,
                duration: Some(Duration::from_secs(1)),
            },
            asked: at(2.0),
            at: at(2.0),
            hit: Ok("broker (pid 7)".into()),
            replica: None,
            freeze: FreezeOutcome::default(),
            scaler_back: None,
            broker: Some(BrokerOutcome {
                bootstrap: "127.0.0.1:9".into(),
                old_pid: 7,
                exited: Some(at(2.5)),
                killed: false,
                resumed: Some(at(3.5)),
                back: Some(at(4.0)),
                new_pid: Some(8),
                error: None,
            }),
            duration: Some(Duration::from_secs(1)),
            lines: Vec::new(),
        };
        // Rows of 1 s, 100 sent and acked each (none acked in the one ending at 3 s), the slowest ack 10 ms x its end.
        let rows: Vec<_> = (1..=10)
            .map(|i| {
                (
                    i as f64,
                    100,
                    if i == 3 { 0 } else { 100 },
                    0,
                    i as f64 * 10.0,
                )
            })
            .collect();
        // 1000 sent, 2 failed; 990 unique in the topic (a gap of 8), 985 processed, 3 processed twice.
        let produce = produce(&rows, 1000, 2);
        let verify = VerifyReport {
            test_run: "run-1".into(),
            delivered: topic(990, 8, 0),
            processed: Some(topic(988, 5, 3)),
            exit_code: 1,
            verdict: "FAILED".into(),
        };
        let run = KafkaRun {
            epoch: base,
            produce_start: base,
            produce: Some(&produce),
            verify: Some(&verify),
            lag: &lag,
            lag_every: Duration::from_millis(500),
            decisions: &[],
            lives: &[],
            lag_threshold: 20.0,
            time_scale: 0.2,
        };
        let report = measure(&[Ok(record)], &run);
        assert_eq!(report.hold_s, 1.0);
        let f = &report.faults[0];
        let k = f.kafka.as_ref().unwrap();
        assert_eq!(
            (
                k.broker_exited_after_s,
                k.broker_down_s,
                k.broker_serving_after_s
            ),
            (Some(0.5), Some(1.5), Some(2.0))
        );
        assert_eq!(f.replacement_ready_after_s, Some(2.0));
        // Back at 4 s; the lag is at or under max(10, 20) from 6 s on and holds for the 1 s hold.
        assert_eq!(f.recovered_after_s, Some(4.0));
        assert!(f.slo_hurt);
        assert_eq!(
            (k.lag_at_fault, k.lag_peak, k.lag_peak_after_s),
            (Some(10), Some(200), Some(2.0))
        );
        // Rows ending at 2..=7 s (the window is 2 s to 7 s): 6 rows, the one ending at 3 s without acks.
        assert_eq!(
            (k.window_sent, k.window_acked, k.window_failed),
            (600, 500, 0)
        );
        assert_eq!(k.window_ack_max_ms, Some(70.0));
        // The first row with acks after the return at 4 s ends at 4 s.
        assert_eq!(f.replacement_serving_after_s, Some(2.0));
        // 1000 sent, 990 in the topic (of the 10 missing at least 8 were acknowledged: 2 sends failed), 985 processed
        // with a backlog of 5 at the end (late, not lost): 10 lost.
        assert_eq!(
            (k.in_topic, k.processed, k.not_processed, k.backlog_at_end),
            (990, 985, 5, Some(5))
        );
        assert_eq!(
            (k.lost_messages, k.lost_acknowledged, k.verify_lost),
            (10, 8, 13)
        );
        assert_eq!((k.duplicates_in_topic, k.duplicates_processed), (0, 3));
        assert_eq!((f.lost, f.lost_pct_of_run), (10, 1.0));
        assert_eq!(
            (k.producer_retries, k.producer_errors.get("MessageTimedOut")),
            (7, Some(&2))
        );
        // A `lost` threshold judges the Kafka losses.
        let lost = Threshold::parse_list("lost<1", 0.2)
            .unwrap()
            .remove(0)
            .check(&report.faults);
        assert!(!lost.passed && lost.actual == Some(10.0), "{lost:?}");
        assert!(lost.message.contains("messages"), "{}", lost.message);
        let pct = Threshold::parse_list("lost<2%", 0.2)
            .unwrap()
            .remove(0)
            .check(&report.faults);
        assert!(pct.passed, "{pct:?}");
        assert!(report.render().contains("lost 10 (acknowledged 8)"));
    }

    #[test]
    fn a_missed_fault_says_why_and_carries_the_run_figures() {
        let base = Instant::now();
        let spec = ChaosSpec::parse_flag("at=1s,action=stop-broker,duration=1s").unwrap();
        let why =
            "the broker at 127.0.0.1:9092 was given with --kafka-brokers: the lab did not start it";
        let run = KafkaRun {
            epoch: base,
            produce_start: base,
            produce: None,
            verify: None,
            lag: &[],
            lag_every: Duration::from_millis(250),
            decisions: &[],
            lives: &[],
            lag_threshold: 20.0,
            time_scale: 1.0,
        };
        let report = measure(
            &[Err((spec, base + Duration::from_secs(1), why.into()))],
            &run,
        );
        let f = &report.faults[0];
        assert_eq!((f.hit.as_deref(), f.error.as_deref()), (None, Some(why)));
        assert_eq!(f.at_s, 1.0);
        assert_eq!(
            f.kafka.as_ref().unwrap().verify_verdict,
            "verify did not run"
        );
        // Nothing was hit: a threshold has nothing to judge and fails.
        let t = Threshold::parse_list("lost<1", 1.0)
            .unwrap()
            .remove(0)
            .check(&report.faults);
        assert!(!t.passed && t.message.contains("no fault hit"), "{t:?}");
    }
}
