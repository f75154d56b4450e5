//! A run's chaos: the profile's faults (time-scaled), the request log they are measured with, and the task that
//! injects each one at its time from the start of the load, beside the control loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_spec::ChaosSpec;
use load::engine::RequestLog;
use load::report::{ChaosReport, Report};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::measure::{Measured, measure};
use super::threshold::Threshold;
use super::{Fault, FaultHandle, FaultRecord, Targets, inject};
use crate::LabError;

/// A fault that hit nothing: what was asked, when, and why not.
pub type Missed = (ChaosSpec, Instant, String);

/// The chaos of one run.
#[derive(Debug, Clone)]
pub struct ChaosRun {
    faults: Vec<ChaosSpec>,
    thresholds: Vec<Threshold>,
    /// Kept only when there are faults: every request's outcome.
    pub request_log: Option<RequestLog>,
    pub restart_backoff: Duration,
    records: Arc<Mutex<Vec<Result<FaultHandle, Missed>>>>,
    /// Live-view lines already handed out, per record.
    printed: Arc<Mutex<Vec<usize>>>,
}

impl ChaosRun {
    /// `faults` as time-scaled in the profile; `thresholds` the threshold text and where it came from (the
    /// `--chaos-threshold` flag or the profile's `chaos_thresholds`, named in errors); `restart_backoff` already
    /// time-scaled.
    pub fn new(
        faults: &[ChaosSpec],
        thresholds: Option<(&str, &str)>,
        restart_backoff: Duration,
        time_scale: f64,
    ) -> Result<ChaosRun, LabError> {
        let thresholds = match thresholds {
            Some((source, text)) => {
                let parsed = Threshold::parse_list(text, time_scale)
                    .map_err(|e| LabError::Usage(format!("{source}: {e}")))?;
                if faults.is_empty() && !parsed.is_empty() {
                    return Err(LabError::Usage(format!(
                        "{source}: the run has no faults (give --chaos or a profile with a chaos: list)"
                    )));
                }
                parsed
            }
            None => Vec::new(),
        };
        // Cluster actions (delete-pod, drain-node, ...) are the generator's, in a cluster.
        for f in faults {
            f.action
                .check_place(chaos_spec::ChaosPlace::Lab)
                .map_err(|e| LabError::Usage(format!("--chaos / chaos: {e}")))?;
        }
        let mut faults = faults.to_vec();
        faults.sort_by_key(|f| f.at);
        Ok(ChaosRun {
            request_log: (!faults.is_empty()).then(RequestLog::new),
            faults,
            thresholds,
            restart_backoff,
            records: Arc::default(),
            printed: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Keep the request log even without scheduled faults, for faults injected from outside ([`ChaosRun::add`]).
    pub fn with_request_log(mut self) -> ChaosRun {
        self.request_log.get_or_insert_with(RequestLog::new);
        self
    }

    /// A fault injected from outside the schedule (e.g. `chaos::inject` called by the console): measured with the
    /// scheduled ones at the end of the run.
    pub fn add(&self, injected: Result<FaultHandle, Missed>) {
        self.records.lock().expect("chaos records").push(injected);
    }

    /// Inject each fault at its time after now (the load's start) until `stop`.
    pub fn spawn(&self, targets: Targets, stop: CancellationToken) -> Option<JoinHandle<()>> {
        if self.faults.is_empty() {
            return None;
        }
        let start = Instant::now();
        let faults = self.faults.clone();
        let records = self.records.clone();
        Some(tokio::spawn(async move {
            for spec in faults {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until((start + spec.at).into()) => {}
                }
                let result = inject(&Fault::from_spec(&spec), &targets).await;
                let entry = result.map_err(|e| (spec.clone(), Instant::now(), e.to_string()));
                records.lock().expect("chaos records").push(entry);
            }
        }))
    }

    /// Lines the live view has not shown yet: each fault as it is injected, and what followed.
    pub fn new_lines(&self) -> Vec<String> {
        let records = self.records.lock().expect("chaos records");
        let mut printed = self.printed.lock().expect("chaos printed");
        printed.resize(records.len(), 0);
        let mut lines = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match r {
                Ok(handle) => {
                    let record = handle.lock().expect("fault record");
                    lines.extend(record.lines.iter().skip(printed[i]).cloned());
                    printed[i] = record.lines.len();
                }
                Err((spec, _, why)) if printed[i] == 0 => {
                    lines.push(format!("chaos: {} hit nothing: {why}", spec.describe()));
                    printed[i] = 1;
                }
                Err(_) => {}
            }
        }
        lines
    }

    /// The faults as they happened so far.
    pub fn records(&self) -> Vec<Result<FaultRecord, Missed>> {
        self.records
            .lock()
            .expect("chaos records")
            .iter()
            .map(|r| match r {
                Ok(h) => Ok(h.lock().expect("fault record").clone()),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }

    /// Put the `chaos` section into the report; a breached chaos threshold makes a passing run's exit code 1
    /// (`contract::exit::THRESHOLDS_BREACHED`) and says so in its verdict.
    pub fn apply(&self, report: &mut Report, run: &Measured<'_>) {
        report.chaos = self.finish(run);
        let failed: Vec<&str> = report
            .chaos
            .iter()
            .flat_map(|c| &c.thresholds)
            .filter(|t| !t.passed)
            .map(|t| t.expression.as_str())
            .collect();
        if !failed.is_empty() && report.exit_code == contract::exit::OK {
            report.exit_code = contract::exit::THRESHOLDS_BREACHED;
            report.verdict = format!("chaos thresholds breached: {}", failed.join(", "));
        }
    }

    /// The `chaos` section from the faults as they happened, measured by `measure` (the Kafka scenario's own
    /// measurement), judged by the run's thresholds; `None` when the run had no faults.
    pub fn finish_with(
        &self,
        measure: impl FnOnce(&[Result<FaultRecord, Missed>]) -> ChaosReport,
    ) -> Option<ChaosReport> {
        let records = self.records();
        if self.faults.is_empty() && records.is_empty() {
            return None;
        }
        let mut report = measure(&records);
        report.thresholds = self
            .thresholds
            .iter()
            .map(|t| t.check(&report.faults))
            .collect();
        Some(report)
    }

    /// The report's `chaos` section (`None` when the run had no faults).
    pub fn finish(&self, run: &Measured<'_>) -> Option<ChaosReport> {
        let log = self
            .request_log
            .as_ref()
            .map(RequestLog::records)
            .unwrap_or_default();
        self.finish_with(|records| measure(records, &log, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_actions_are_refused_with_the_lab_equivalent() {
        let spec = ChaosSpec::parse_flag("at=1s,action=delete-pod").unwrap();
        let e = ChaosRun::new(&[spec], None, Duration::from_secs(1), 1.0).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, LabError::Usage(_)), "{text}");
        assert!(
            text.contains("delete-pod") && text.contains("generator run") && text.contains("kill"),
            "{text}"
        );
        let lab = ChaosSpec::parse_flag("at=1s,action=kill").unwrap();
        assert!(ChaosRun::new(&[lab], None, Duration::from_secs(1), 1.0).is_ok());
    }
}
