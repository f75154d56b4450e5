//! What a finished run concludes: the target's CPU cost (from Prometheus), the thresholds, the exit code and the
//! one-line verdict, also written to the container's termination log.

use std::io::Write as _;
use std::path::Path;

use contract::metrics::consumer::PROCESS_CPU_SECONDS_TOTAL;

use crate::exit;
use crate::monitor::PrometheusSource;
use crate::report::Report;
use crate::threshold::Threshold;

/// The default `--cost-query`: CPU seconds of the target Deployment's pods over the run (cAdvisor/process series).
pub fn default_cost_query(namespace: &str, deployment: &str) -> String {
    format!(
        "sum(increase({}{{namespace=\"{namespace}\",pod=~\"{deployment}-.*\"}}[{{range}}]))",
        PROCESS_CPU_SECONDS_TOTAL.name
    )
}

/// Measure the target's CPU over the run with `query` (its `{range}` becomes the run's length in seconds) and store
/// it in the report as cost per 1000 requests. Errors are returned as text for the caller to show.
pub async fn measure_target_cpu(
    prometheus_url: &str,
    query: &str,
    report: &mut Report,
) -> Result<(), String> {
    // The window reaches back to the run's start from now (the query may come a little after the run ended).
    let since_start = humantime::parse_rfc3339(&report.started_at)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(report.elapsed_s, |d| d.as_secs_f64());
    let range = format!("{}s", since_start.ceil().max(1.0) as u64);
    let promql = query.replace("{range}", &range);
    let source = PrometheusSource::new(prometheus_url, "", "");
    let value = source
        .query_scalar(&promql)
        .await
        .map_err(|e| e.to_string())?;
    let cpu_seconds = value.ok_or_else(|| format!("no series for {promql}"))?;
    report.target_cpu = Some(crate::report::TargetCpu {
        query: promql,
        cpu_seconds,
        cpu_seconds_per_1000_requests: (report.requests > 0)
            .then(|| cpu_seconds * 1000.0 / report.requests as f64),
    });
    Ok(())
}

/// Write the verdict to the termination log when that file exists (Kubernetes creates it in the container).
pub fn write_termination_log(path: &Path, verdict: &str) {
    if path.exists()
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
    {
        let _ = writeln!(f, "{verdict}");
    }
}

/// Fill in thresholds, exit code and verdict.
pub fn judge(report: &mut Report, thresholds: &[Threshold]) {
    report.thresholds = thresholds.iter().map(|t| t.evaluate(report)).collect();
    let failed: Vec<String> = report
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{} ({})", t.expression, t.message))
        .collect();
    let code = if report.interrupted {
        exit::INTERRUPTED
    } else if report.self_check.saturated {
        exit::GENERATOR_SATURATED
    } else if !failed.is_empty() {
        exit::THRESHOLDS_BREACHED
    } else if monitor_never_observed(report).is_some() {
        exit::RUNTIME_ERROR
    } else {
        exit::OK
    };
    let summary = format!(
        "{} {:.0}s: {} requests at {:.1} req/s (asked {:.1}), p95 {}, errors {:.2}%, dropped {}",
        report.profile,
        report.duration_s,
        report.requests,
        report.achieved_rate,
        report.target_rate,
        crate::stats::fmt_ms(report.latency.p95_ms),
        report.error_rate * 100.0,
        report.dropped
    );
    report.verdict = match code {
        exit::OK => format!("PASS {summary}"),
        exit::INTERRUPTED => format!("INTERRUPTED (partial report) {summary}"),
        exit::GENERATOR_SATURATED => format!(
            "GENERATOR SATURATED {summary}: {}",
            report.self_check.message
        ),
        exit::RUNTIME_ERROR => format!(
            "FAIL --monitor: {}; {summary}",
            monitor_never_observed(report).unwrap_or_default()
        ),
        _ => format!("FAIL thresholds breached: {}; {summary}", failed.join(", ")),
    };
    report.exit_code = code;
}

/// Why `--monitor` gave no scaling report worth the name: every observation failed (RBAC refused, the API
/// unreachable). Such a run fails rather than print a report that silently says nothing about scaling.
fn monitor_never_observed(report: &Report) -> Option<String> {
    let scaling = report.scaling.as_ref()?;
    (scaling.observations == 0 && scaling.observation_errors > 0).then(|| {
        format!(
            "none of {} observations of {} succeeded, the last: {}",
            scaling.observation_errors,
            scaling.source,
            scaling.last_error.as_deref().unwrap_or("not recorded")
        )
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::engine::RunData;
    use crate::model::{ArrivalMode, ReplicaSnapshot, Split, TimelinePoint};
    use crate::profile::{Profile, RequestSpec};
    use crate::stats::{LatencySummary, Shard};

    /// A run as the engine hands it over, monitored, with `observed` successful observations and `errors` failed.
    fn monitored(observed: usize, errors: u64) -> Report {
        let timeline = (0..observed)
            .map(|i| TimelinePoint {
                t_s: i as f64,
                snapshot: ReplicaSnapshot {
                    ready: Some(1),
                    ..ReplicaSnapshot::default()
                },
            })
            .collect();
        Report::assemble(RunData {
            profile: Profile::constant(
                1.0,
                Duration::from_secs(2),
                RequestSpec::new("GET", "/", None),
            ),
            mode: ArrivalMode::Open,
            split: Split::default(),
            started_at: SystemTime::UNIX_EPOCH,
            load_elapsed: Duration::from_secs(2),
            elapsed: Duration::from_secs(2),
            interrupted: false,
            unfinished: 0,
            endpoint_names: vec!["GET /".into()],
            totals: Shard::new(1),
            intervals: Vec::new(),
            timeline,
            monitor_name: Some("kubernetes deployment lab/consumer".into()),
            monitor_errors: errors,
            monitor_last_error: (errors > 0)
                .then(|| "deployments.apps \"consumer\" is forbidden".into()),
            scaling_record: None,
            slo: None,
            expected_requests: 2.0,
            load_end_s: 2.0,
            schedule_lag: LatencySummary::default(),
            generator_cpu_seconds: None,
            targets: vec!["http://127.0.0.1:1".into()],
        })
    }

    #[test]
    fn a_monitor_that_never_observed_fails_the_run_naming_the_last_error() {
        let mut report = monitored(0, 12);
        judge(&mut report, &[]);
        assert_eq!(report.exit_code, exit::RUNTIME_ERROR, "{}", report.verdict);
        assert!(
            report
                .verdict
                .starts_with("FAIL --monitor: none of 12 observations"),
            "{}",
            report.verdict
        );
        assert!(report.verdict.contains("forbidden"), "{}", report.verdict);
    }

    #[test]
    fn a_monitor_that_observed_at_least_once_does_not_fail_the_run() {
        for (observed, errors) in [(3, 12), (3, 0)] {
            let mut report = monitored(observed, errors);
            judge(&mut report, &[]);
            assert_eq!(report.exit_code, exit::OK, "{}", report.verdict);
        }
    }
}
