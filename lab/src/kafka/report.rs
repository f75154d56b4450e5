//! The Kafka run's report.json: the producer's own report (`generator produce`'s), verify's, and the `chaos` section
//! (the same schema as the http scenario's), with the exit code they decide: verify's, unless a chaos threshold was
//! breached in an otherwise passing run (`contract::exit::THRESHOLDS_BREACHED`).

use std::path::Path;

use generator::kafka::{ProduceReport, VerifyReport};
use generator::report::ChaosReport;

use crate::LabError;

/// Print verify's finding in one line and keep it as `out/verify.json`.
pub(super) fn print_verify(out: &Path, test_run: &str, report: &VerifyReport) {
    let lost = report.delivered.lost + report.processed.as_ref().map_or(0, |p| p.lost);
    let duplicates =
        report.delivered.duplicates + report.processed.as_ref().map_or(0, |p| p.duplicates);
    println!(
        "verify --processed (test run {test_run}): delivered {} read, processed {} read; lost {lost}, duplicates {duplicates}: {}",
        report.delivered.records_read,
        report.processed.as_ref().map_or(0, |p| p.records_read),
        report.verdict
    );
    let _ = std::fs::write(
        out.join("verify.json"),
        serde_json::to_string_pretty(report).unwrap_or_default(),
    );
}

/// Print the recovery table, write `out/report.json`, and return the run's exit code.
pub(super) fn conclude(
    out: &Path,
    interrupted: bool,
    test_run: &str,
    produce: Option<&ProduceReport>,
    verify: Option<&VerifyReport>,
    chaos: Option<&ChaosReport>,
) -> Result<i32, LabError> {
    let mut exit_code = if interrupted {
        contract::exit::INTERRUPTED
    } else {
        verify.map_or(contract::exit::OK, |r| r.exit_code)
    };
    let mut verdict = verify.map_or_else(|| "interrupted".to_string(), |v| v.verdict.clone());
    if let Some(report) = chaos {
        print!("{}", report.render());
        if !report.passed() && exit_code == contract::exit::OK {
            exit_code = contract::exit::THRESHOLDS_BREACHED;
            let failed: Vec<&str> = report
                .thresholds
                .iter()
                .filter(|t| !t.passed)
                .map(|t| t.expression.as_str())
                .collect();
            verdict = format!("chaos thresholds breached: {}", failed.join(", "));
        }
    }
    let report = serde_json::json!({
        "scenario": "kafka",
        "test_run": test_run,
        "exit_code": exit_code,
        "verdict": verdict,
        "produce": produce,
        "verify": verify,
        "chaos": chaos,
    });
    let path = out.join("report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|source| LabError::Io {
        path: path.display().to_string(),
        source,
    })?;
    println!("report: {}", path.display());
    Ok(exit_code)
}
