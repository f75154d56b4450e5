//! The report's `chaos` section: every fault injected during the run with what it cost the load (requests failed,
//! timed out and dropped between the fault and the recovery, by class, counted from the request log), how long until
//! the load was back within the SLO and until the replacement served, what the autoscaler did meanwhile, and the
//! chaos thresholds' verdicts. The lab fills it for its faults, `generator run` for the cluster's
//! (`generator::chaos`); this module holds the schema and the recovery table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ThresholdResult;

/// The `chaos` section of report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosReport {
    /// The SLO a recovery is judged by, and how long it must hold (seconds) in buckets of `bucket_s`.
    pub slo: String,
    pub hold_s: f64,
    pub bucket_s: f64,
    pub faults: Vec<FaultReport>,
    /// `recovery<30s`, `lost<0.1%`, ... each checked against every fault.
    pub thresholds: Vec<ThresholdResult>,
}

/// One fault and what followed it. Times are seconds since the load started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    pub at_s: f64,
    /// As written: `kill`, `freeze`, `kill-scaler`, ...
    pub action: String,
    /// As written: `replica`, `replica-2`, `scaler`.
    pub target: String,
    /// Whom it hit: `consumer-3 (pid 1234)`, `scaler (pid 99)`; `None` when nothing could be hit.
    pub hit: Option<String>,
    /// Why nothing was hit (no ready replica, no such replica, ...).
    pub error: Option<String>,
    /// Freeze length, or the restart back-off of a kill, in seconds.
    pub duration_s: Option<f64>,
    /// The measured window: from the fault to the recovery (or to the end of the load when it never recovered).
    pub window_end_s: f64,
    /// Requests that ended in the window (dropped ones included).
    pub requests: u64,
    /// failed (HTTP errors, 429s, connection errors) + timed out + dropped.
    pub lost: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub dropped: u64,
    /// `lost` by outcome class (`http_error`, `throttled`, `timeout`, `connect_error`, `other_error`, `dropped`).
    pub by_class: BTreeMap<String, u64>,
    /// `lost` as a share of every request of the run (%).
    pub lost_pct_of_run: f64,
    /// Replica faults: requests that had taken the replica as their target and were still open at the fault.
    pub in_flight_at_fault: Option<u64>,
    /// Replica faults: of those and of any later request to it, how many failed or timed out.
    pub failed_on_target: Option<u64>,
    /// When the success rate and latency were back within the SLO for `hold_s` (seconds after the fault);
    /// `None`: not within the load.
    pub recovered_after_s: Option<f64>,
    /// Whether the SLO was missed at all after the fault (else `recovered_after_s` is 0).
    pub slo_hurt: bool,
    /// Freeze: when its readiness probe failed and it left the targets (seconds after the fault).
    #[serde(default)]
    pub left_targets_after_s: Option<f64>,
    /// Freeze: requests that took the frozen replica as their target while it was out of the targets (0 when the
    /// endpoint left as it should).
    #[serde(default)]
    pub picked_while_out: Option<u64>,
    /// Kill/terminate: until the replacement replica was ready; freeze: until the frozen one was back in the
    /// targets; scaler faults: until the scaler answered again (seconds after the fault).
    pub replacement_ready_after_s: Option<f64>,
    /// Until the replacement (or the returned replica) answered its first request.
    pub replacement_serving_after_s: Option<f64>,
    /// Who replaced it (`consumer-5`) or returned.
    pub replacement: Option<String>,
    pub autoscaler: AutoscalerReaction,
    /// Cluster faults: `done`, `denied` (RBAC, 403), `blocked` (a PodDisruptionBudget refused the eviction until the
    /// retry bound), `not-found`, `failed`, `not-reached` (the run ended first). `None` for the lab's faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Cluster evictions (`evict-pod`, `drain-node`): how many times a 429 (a disruption budget) was retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Cluster faults: when it was undone (the partition's policy deleted, the scaler's count restored, the node
    /// uncordoned), seconds after the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_after_s: Option<f64>,
    /// Cluster faults: the undo failed, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_error: Option<String>,
    /// Faults of the Kafka scenario: the broker's stop and return, the producer and the lag in the window, and what
    /// `verify` found. `None` in the http scenario.
    #[serde(default)]
    pub kafka: Option<KafkaFaultReport>,
}

/// A fault of the Kafka scenario, measured by the producer, the group's lag and `verify`. In that scenario a fault's
/// `lost` is `lost_messages` (messages, not requests), so a `lost<` threshold judges Kafka losses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KafkaFaultReport {
    /// `stop-broker`: the broker's address (the same after the restart).
    #[serde(default)]
    pub broker: Option<String>,
    /// `stop-broker`: from the SIGTERM to the JVM's exit (its clean shutdown), seconds.
    #[serde(default)]
    pub broker_exited_after_s: Option<f64>,
    /// `stop-broker`: the broker ignored SIGTERM and was SIGKILLed.
    #[serde(default)]
    pub broker_killed: bool,
    /// `stop-broker`: how long no broker served: from the old JVM's exit until the restarted one answered, seconds.
    #[serde(default)]
    pub broker_down_s: Option<f64>,
    /// `stop-broker`: from the fault until the restarted broker answered a Metadata request (serves again), seconds.
    #[serde(default)]
    pub broker_serving_after_s: Option<f64>,
    /// Why the broker did not come back.
    #[serde(default)]
    pub broker_error: Option<String>,
    /// The producer in the fault's window (its per-interval rows that ended in it): messages sent, acknowledged,
    /// failed, and the slowest ack (ms, from the message's scheduled send).
    pub window_sent: u64,
    pub window_acked: u64,
    pub window_failed: u64,
    #[serde(default)]
    pub window_ack_max_ms: Option<f64>,
    /// The producer over the run: librdkafka's request retries, failures by error class.
    pub producer_retries: u64,
    pub producer_errors: BTreeMap<String, u64>,
    /// The group's lag (messages: high watermarks minus committed offsets) at the fault and its peak in the window
    /// (`None`: not readable, e.g. while the broker was down).
    #[serde(default)]
    pub lag_at_fault: Option<u64>,
    #[serde(default)]
    pub lag_peak: Option<u64>,
    #[serde(default)]
    pub lag_peak_after_s: Option<f64>,
    /// The run's messages end to end (`verify --processed` at the end, so the same for every fault of a run): sent,
    /// acknowledged by the broker, unique in the topic and in `<topic>.processed`.
    pub sent: u64,
    pub acked: u64,
    pub in_topic: u64,
    pub processed: u64,
    /// Messages lost (the fault's `lost`): sent but not in the topic, plus messages in the topic never processed
    /// beyond what the group's backlog at the end explains (`not_processed - backlog_at_end`: skipped, not late).
    pub lost_messages: u64,
    /// Unique in the topic without a processed record at the end, and the group's lag then: a backlog left by a run
    /// that ended before it drained is late, not lost.
    #[serde(default)]
    pub not_processed: u64,
    #[serde(default)]
    pub backlog_at_end: Option<u64>,
    /// Acknowledged messages missing from the topic: at least `sent - in_topic - failed` (exact when no send
    /// failed, since then every message sent was acknowledged).
    pub lost_acknowledged: u64,
    /// verify's gaps (sequences below the highest one read, missing), topic + processed.
    pub verify_lost: u64,
    /// Repeats in the topic (a producer retry writing twice; 0 with the idempotent producer) and in processed
    /// (a message processed again: at-least-once redelivery after a rebalance or a failed commit).
    pub duplicates_in_topic: u64,
    pub duplicates_processed: u64,
    pub verify_verdict: String,
}

/// The controller's steps in the window (from the fault to the recovery or, for a scaler fault, to the scaler's
/// return, whichever is later).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoscalerReaction {
    pub steps: u32,
    /// Steps in which at least one trigger could not be read.
    pub failed_readings: u32,
    /// Steps in which KEDA's fallback stood in for a failing AverageValue trigger.
    pub fallback_steps: u32,
    /// The first such step: seconds after the fault, and the trigger and what it said.
    pub fallback_first_after_s: Option<f64>,
    pub fallback_detail: Option<String>,
    /// Steps where a failing Value trigger (no fallback in KEDA) was an error and the HPA held (no scale-down).
    pub value_errors: u32,
    /// Decisions that changed the replica count: `12.5s 3 -> 2: <reason>`.
    pub changes: Vec<String>,
}

impl FaultReport {
    /// A fault as scheduled, before anything is measured: `at_s` seconds into the load, its window empty. Missed
    /// faults stay like this with their `error`; measured ones fill in the rest.
    pub fn unmeasured(spec: &chaos_spec::ChaosSpec, at_s: f64) -> FaultReport {
        FaultReport {
            at_s,
            action: spec.action.to_string(),
            target: spec.target().to_string(),
            duration_s: spec.duration.map(|d| d.as_secs_f64()),
            window_end_s: at_s,
            ..FaultReport::default()
        }
    }

    /// A fault that hit nothing, and why.
    pub fn missed(spec: &chaos_spec::ChaosSpec, at_s: f64, why: &str) -> FaultReport {
        FaultReport {
            error: Some(why.to_string()),
            ..FaultReport::unmeasured(spec, at_s)
        }
    }
}

impl KafkaFaultReport {
    /// The lines under a Kafka fault's row in the recovery table.
    fn render_lines(&self, secs: &dyn Fn(Option<f64>) -> String) -> String {
        let count = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let mut out = String::new();
        if let Some(broker) = &self.broker {
            out.push_str(&format!(
                "           broker {broker}: exited after {}{}, down {}, serving again after {}{}\n",
                secs(self.broker_exited_after_s),
                if self.broker_killed { " (SIGKILL)" } else { "" },
                secs(self.broker_down_s),
                secs(self.broker_serving_after_s),
                self.broker_error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" ({e})"))
            ));
        }
        out.push_str(&format!(
            "           producer in the window: sent {}, acked {}, failed {}, slowest ack {}; run: {} retries{}\n",
            self.window_sent,
            self.window_acked,
            self.window_failed,
            self.window_ack_max_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0}ms")),
            self.producer_retries,
            if self.producer_errors.is_empty() {
                String::new()
            } else {
                format!(", errors {:?}", self.producer_errors)
            }
        ));
        out.push_str(&format!(
            "           lag at the fault {}, peak {} after {}\n",
            count(self.lag_at_fault),
            count(self.lag_peak),
            secs(self.lag_peak_after_s)
        ));
        out.push_str(&format!(
            "           messages (run): sent {}, acked {}, in topic {}, processed {} (backlog at the end {}); lost {} (acknowledged {}), duplicates {} in topic, {} processed: {}\n",
            self.sent,
            self.acked,
            self.in_topic,
            self.processed,
            count(self.backlog_at_end),
            self.lost_messages,
            self.lost_acknowledged,
            self.duplicates_in_topic,
            self.duplicates_processed,
            self.verify_verdict
        ));
        out
    }
}

impl ChaosReport {
    /// Whether every chaos threshold passed.
    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }

    /// The recovery table printed at the end of a lab run.
    pub fn render(&self) -> String {
        let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}s"));
        let lost = if self.faults.iter().any(|f| f.kafka.is_some()) {
            "lost = messages sent but not in the topic, or never processed beyond the backlog left at the end (verify --processed); failed = the producer's failed sends in the window"
        } else {
            "lost = failed + timed out + dropped between the fault and the recovery"
        };
        let mut out = format!(
            "chaos: {} fault(s); recovered = {} held for {:.1}s (buckets of {:.2}s); {lost}\n",
            self.faults.len(),
            self.slo,
            self.hold_s,
            self.bucket_s
        );
        out.push_str(&format!(
            "{:>7}  {:<13} {:<22} {:>5} {:>6} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9}  {}\n",
            "at",
            "action",
            "hit",
            "lost",
            "failed",
            "timeout",
            "dropped",
            "inflight",
            "recovered",
            "replaced",
            "serving",
            "autoscaler"
        ));
        for f in &self.faults {
            let hit = f.hit.clone().unwrap_or_else(|| {
                // A cluster fault's status is short; its error follows on a line of its own.
                let why = f.status.as_deref().or(f.error.as_deref());
                format!("({})", why.unwrap_or("nothing"))
            });
            let a = &f.autoscaler;
            // A cluster fault (it has a status) is followed through --monitor's observations, when there are any.
            let mut reaction = match (f.status.is_some(), a.steps) {
                (true, 0) => "-".to_string(),
                (true, n) => format!("{n} observations"),
                (false, n) => format!("{n} steps"),
            };
            if a.failed_readings > 0 {
                reaction.push_str(&format!(", {} with failed readings", a.failed_readings));
            }
            if a.fallback_steps > 0 {
                reaction.push_str(&format!(
                    ", fallback in {} (first after {})",
                    a.fallback_steps,
                    secs(a.fallback_first_after_s)
                ));
            }
            if a.value_errors > 0 {
                reaction.push_str(&format!(
                    ", Value trigger failing in {} (held)",
                    a.value_errors
                ));
            }
            if !a.changes.is_empty() {
                reaction.push_str(&format!(", {} change(s)", a.changes.len()));
            }
            let recovered = if f.slo_hurt {
                secs(f.recovered_after_s)
            } else {
                "not hurt".to_string()
            };
            out.push_str(&format!(
                "{:>6.1}s  {:<13} {:<22} {:>5} {:>6} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9}  {}\n",
                f.at_s,
                f.action,
                hit,
                f.lost,
                f.failed,
                f.timed_out,
                f.dropped,
                f.in_flight_at_fault
                    .map_or_else(|| "-".to_string(), |n| n.to_string()),
                recovered,
                secs(f.replacement_ready_after_s),
                secs(f.replacement_serving_after_s),
                reaction
            ));
            for change in &a.changes {
                out.push_str(&format!("           {change}\n"));
            }
            if let Some(e) = f.error.as_ref().filter(|_| f.status.is_some()) {
                out.push_str(&format!("           {e}\n"));
            }
            if let Some(n) = f.retries.filter(|n| *n > 0) {
                out.push_str(&format!(
                    "           evictions retried {n} time(s) on a disruption budget\n"
                ));
            }
            if let Some(t) = f.returned_after_s {
                out.push_str(&format!("           undone after {t:.1}s\n"));
            }
            if let Some(e) = &f.undo_error {
                out.push_str(&format!("           undo FAILED: {e}\n"));
            }
            if let Some(k) = &f.kafka {
                out.push_str(&k.render_lines(&secs));
            }
        }
        for t in &self.thresholds {
            out.push_str(&format!(
                "  threshold {} {}: {}\n",
                t.expression,
                if t.passed { "passed" } else { "FAILED" },
                t.message
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_faults_render_their_status_error_retries_and_undo() {
        let report = ChaosReport {
            slo: "p95<500ms".into(),
            hold_s: 5.0,
            bucket_s: 1.0,
            faults: vec![
                FaultReport {
                    at_s: 2.0,
                    action: "evict-pod".into(),
                    target: "pod".into(),
                    error: Some("blocked: blocked by a disruption budget after 4 retries".into()),
                    status: Some("blocked".into()),
                    retries: Some(4),
                    ..FaultReport::default()
                },
                FaultReport {
                    at_s: 3.0,
                    action: "partition-pod".into(),
                    target: "pod/c2".into(),
                    hit: Some("pod/c2 on node/n2".into()),
                    status: Some("done".into()),
                    returned_after_s: Some(10.0),
                    undo_error: Some("denied: networkpolicies is forbidden".into()),
                    ..FaultReport::default()
                },
            ],
            thresholds: Vec::new(),
        };
        let text = report.render();
        assert!(text.contains("(blocked)"), "{text}");
        assert!(text.contains("after 4 retries"), "{text}");
        assert!(text.contains("evictions retried 4 time(s)"), "{text}");
        assert!(text.contains("pod/c2 on node/n2"), "{text}");
        assert!(text.contains("undone after 10.0s"), "{text}");
        assert!(text.contains("undo FAILED: denied"), "{text}");
        // A lab fault keeps its error in the hit column and no status line.
        let lab = ChaosReport {
            faults: vec![FaultReport {
                action: "kill".into(),
                error: Some("no ready replica".into()),
                ..FaultReport::default()
            }],
            ..report
        };
        let text = lab.render();
        assert!(
            text.contains("(no ready replica)") && text.contains("0 steps"),
            "{text}"
        );
    }
}
