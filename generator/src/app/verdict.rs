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
        _ => format!("FAIL thresholds breached: {}; {summary}", failed.join(", ")),
    };
    report.exit_code = code;
}
