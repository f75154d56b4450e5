//! Chaos in a cluster, carried out by `generator run`: the profile's (or `--chaos`') cluster faults — delete or evict
//! a consumer pod, cordon or drain a node, partition a pod with a NetworkPolicy, scale the scaler to zero — fired at
//! their times through the Kubernetes API with the load-generator component's RBAC, undone on every path, and
//! measured from the run's own request log.
//!
//! [`cluster`] holds the API calls, [`run`] the tasks that fire and undo them, [`measure`] the one formula for what a
//! fault cost the load (the lab's faults use it too), [`threshold`] the chaos thresholds (`recovery<30s,lost<0.1%`),
//! shared with the lab as well. [`report`] turns the faults into the report's `chaos` section, [`observed`] adds what
//! `--monitor` saw the autoscaler do in each fault's window, and [`judge`] sets the exit code from it.

pub mod cluster;
pub mod run;

pub use load::chaos::{measure, observed, threshold};

use std::time::Instant;

use timeline::Slo;

use crate::engine::RequestRecord;
use crate::exit;
use crate::report::{ChaosReport, FaultReport, Report};
use chaos_spec::{ChaosAction, ChaosSpec};
pub use cluster::{ApiFailure, Cluster, ClusterConfig};
pub use run::{ChaosTasks, Pacing};
pub use threshold::Threshold;

/// How a cluster fault went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    /// Carried out.
    Done,
    /// RBAC refused a call (403).
    Denied,
    /// A PodDisruptionBudget kept refusing the eviction (429) until the retry bound.
    Blocked,
    /// The target (or the scaler, or the consumer Deployment) does not exist (404), or no pod was ready.
    NotFound,
    /// Any other API error.
    Failed,
    /// The run ended before the fault was due.
    NotReached,
}

impl FaultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultStatus::Done => "done",
            FaultStatus::Denied => "denied",
            FaultStatus::Blocked => "blocked",
            FaultStatus::NotFound => "not-found",
            FaultStatus::Failed => "failed",
            FaultStatus::NotReached => "not-reached",
        }
    }
}

/// One cluster fault as it happened.
#[derive(Debug, Clone)]
pub struct ClusterFault {
    /// As scheduled (time-scaled).
    pub spec: ChaosSpec,
    /// When it was fired (planned time while not reached).
    pub at: Instant,
    pub status: FaultStatus,
    /// `pod/consumer-abc on node/n1`, `node/n1 (3 of 3 pod(s) evicted)`, `deployment/scaler (2 -> 0)`.
    pub hit: Option<String>,
    /// Why it was not carried out (the API's message), or a note (the partition's policy).
    pub detail: Option<String>,
    /// Evictions retried on a 429 (a disruption budget).
    pub retries: u32,
    /// The pod it acted on.
    pub pod: Option<String>,
    /// Partition: when the policy was in force.
    pub left: Option<Instant>,
    /// When it was undone: the policy deleted, the scaler's count restored, the node uncordoned.
    pub returned: Option<Instant>,
    /// The first new consumer pod Ready after the fault, and when it was seen Ready.
    pub replacement: Option<(String, Instant)>,
    /// The undo failed (the run's end still tried it).
    pub undo_error: Option<String>,
}

impl ClusterFault {
    pub fn new(spec: ChaosSpec, at: Instant) -> ClusterFault {
        ClusterFault {
            spec,
            at,
            status: FaultStatus::NotReached,
            hit: None,
            detail: None,
            retries: 0,
            pod: None,
            left: None,
            returned: None,
            replacement: None,
            undo_error: None,
        }
    }
}

/// The faults a run carries out in the cluster: the lab's actions are refused with a usage error naming the
/// cluster's equivalent.
pub fn cluster_faults(faults: &[ChaosSpec]) -> Result<Vec<ChaosSpec>, String> {
    for f in faults {
        f.action.check_place(chaos_spec::ChaosPlace::Cluster)?;
    }
    let mut faults = faults.to_vec();
    faults.sort_by_key(|f| f.at);
    Ok(faults)
}

/// What the run measured, for [`report`].
#[derive(Debug)]
pub struct Measured<'a> {
    pub load_start: Instant,
    pub load_end: Instant,
    pub log: &'a [RequestRecord],
    pub slo: &'a Slo,
    pub time_scale: f64,
}

/// The report's `chaos` section for the cluster faults.
pub fn report(
    faults: &[ClusterFault],
    run: &Measured<'_>,
    thresholds: &[Threshold],
) -> ChaosReport {
    let hold = measure::hold(run.time_scale);
    let total = run.log.len().max(1) as f64;
    let faults: Vec<FaultReport> = faults
        .iter()
        .map(|f| {
            let t0 = f.at;
            let after = |t: Instant| measure::since(t0, t);
            let mut r = FaultReport {
                status: Some(f.status.as_str().to_string()),
                retries: matches!(
                    f.spec.action,
                    ChaosAction::EvictPod | ChaosAction::DrainNode
                )
                .then_some(f.retries),
                undo_error: f.undo_error.clone(),
                returned_after_s: f.returned.map(after),
                ..FaultReport::unmeasured(&f.spec, measure::since(run.load_start, t0))
            };
            if f.status != FaultStatus::Done {
                let what = f.hit.as_deref().unwrap_or("");
                let why = f.detail.clone().unwrap_or_else(|| f.status.as_str().into());
                r.error = Some(if what.is_empty() {
                    format!("{}: {why}", f.status.as_str())
                } else {
                    format!("{} {what}: {why}", f.status.as_str())
                });
                return r;
            }
            r.hit = f.hit.clone();
            let (recovered, end) =
                measure::window(run.log, t0, run.load_end, run.slo, run.time_scale);
            let lost = measure::lost_between(run.log, t0, end);
            r.window_end_s = measure::since(run.load_start, end);
            r.requests = lost.requests;
            r.lost = lost.total();
            r.failed = lost.failed;
            r.timed_out = lost.timed_out;
            r.dropped = lost.dropped;
            r.lost_pct_of_run = (lost.total() as f64 / total * 100.0 * 1000.0).round() / 1000.0;
            r.by_class = lost.by_class;
            r.recovered_after_s = recovered.map(|d| d.as_secs_f64());
            r.slo_hurt = recovered.is_none_or(|d| !d.is_zero());
            r.left_targets_after_s = f.left.map(after);
            match (&f.replacement, f.spec.action) {
                (Some((name, ready)), _) => {
                    r.replacement = Some(name.clone());
                    r.replacement_ready_after_s = Some(after(*ready));
                }
                // The undo is the return: the policy gone, the scaler back.
                (None, ChaosAction::PartitionPod | ChaosAction::ScalerToZero) => {
                    r.replacement = f.pod.clone().or_else(|| Some("scaler".into()));
                    r.replacement_ready_after_s = f.returned.map(after);
                }
                _ => {}
            }
            r
        })
        .collect();
    let mut out = ChaosReport {
        slo: run.slo.to_string(),
        hold_s: hold.as_secs_f64(),
        bucket_s: (hold / measure::BUCKETS_PER_HOLD).as_secs_f64(),
        faults,
        thresholds: Vec::new(),
    };
    out.thresholds = thresholds.iter().map(|t| t.check(&out.faults)).collect();
    out
}

/// After the run's own verdict: a breached chaos threshold fails the run (exit 1); a fault that could not be carried
/// out for a reason other than a disruption budget (denied by RBAC, not found, an API error) is a runtime error
/// (exit 6), so a misconfigured chaos run never passes silently. A budget that blocked an eviction did its job: that
/// alone does not fail the run (a threshold on the fault does, as it was never measured).
pub fn judge(report: &mut Report) {
    let Some(chaos) = &report.chaos else {
        return;
    };
    if report.exit_code != exit::OK {
        return;
    }
    let breached: Vec<String> = chaos
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{} ({})", t.expression, t.message))
        .collect();
    let broken: Vec<String> = chaos
        .faults
        .iter()
        .filter(|f| matches!(f.status.as_deref(), Some("denied" | "not-found" | "failed")))
        .map(|f| {
            format!(
                "{} at {:.1}s {}",
                f.action,
                f.at_s,
                f.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    let summary = report
        .verdict
        .strip_prefix("PASS ")
        .unwrap_or(&report.verdict)
        .to_string();
    if !breached.is_empty() {
        report.exit_code = exit::THRESHOLDS_BREACHED;
        report.verdict = format!(
            "FAIL chaos thresholds breached: {}; {summary}",
            breached.join(", ")
        );
    } else if !broken.is_empty() {
        report.exit_code = exit::RUNTIME_ERROR;
        report.verdict = format!("FAIL chaos: {}; {summary}", broken.join("; "));
    }
}
