//! The Kafka run's report.json: the producer's own report (`generator produce`'s), verify's, and the `chaos` section
//! (the same schema as the http scenario's), with the exit code they decide: verify's, unless a chaos threshold was
//! breached in an otherwise passing run (`contract::exit::THRESHOLDS_BREACHED`).

use std::path::Path;

use kafka_load::{ProduceReport, VerifyReport};
use load::report::ChaosReport;

use crate::LabError;

/// Print verify's finding in one line and keep it as `out/verify.json`; a `verify.json` that cannot be written fails
/// the run like an unwritable report.json does.
pub(super) fn print_verify(
    out: &Path,
    test_run: &str,
    report: &VerifyReport,
) -> Result<(), LabError> {
    let lost = report.delivered.lost + report.processed.as_ref().map_or(0, |p| p.lost);
    let duplicates =
        report.delivered.duplicates + report.processed.as_ref().map_or(0, |p| p.duplicates);
    println!(
        "verify --processed (test run {test_run}): delivered {} read, processed {} read; lost {lost}, duplicates {duplicates}: {}",
        report.delivered.records_read,
        report.processed.as_ref().map_or(0, |p| p.records_read),
        report.verdict
    );
    write_json(&out.join("verify.json"), report)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| LabError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, text).map_err(|source| LabError::Io {
        path: path.display().to_string(),
        source,
    })
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
    write_json(&path, &report)?;
    println!("report: {}", path.display());
    Ok(exit_code)
}

#[cfg(test)]
mod tests {
    use kafka_load::TopicCheck;

    use super::*;

    fn verify_report() -> VerifyReport {
        VerifyReport {
            test_run: "t1".into(),
            delivered: TopicCheck {
                topic: "work".into(),
                records_read: 3,
                skipped: 0,
                complete: true,
                producers: Vec::new(),
                lost: 0,
                duplicates: 0,
                waited_s: None,
                readings: None,
            },
            processed: None,
            exit_code: contract::exit::OK,
            verdict: "no message lost".into(),
        }
    }

    #[test]
    fn an_unwritable_verify_json_fails_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the output directory should be: writing under it fails even as root.
        let out = dir.path().join("out");
        std::fs::write(&out, "not a directory").expect("file");
        let error = print_verify(&out, "t1", &verify_report()).expect_err("verify.json unwritable");
        assert!(matches!(error, LabError::Io { .. }), "{error}");
        assert_eq!(error.exit_code(), contract::exit::RUNTIME_ERROR);
        assert!(error.to_string().contains("verify.json"), "{error}");
    }

    #[test]
    fn verify_json_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        print_verify(dir.path(), "t1", &verify_report()).expect("written");
        let back: VerifyReport =
            serde_json::from_slice(&std::fs::read(dir.path().join("verify.json")).expect("read"))
                .expect("parse");
        assert_eq!(back, verify_report());
    }
}
