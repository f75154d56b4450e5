//! The `lab` executable as a user, `kill`, `timeout` or a supervisor meets it: the real scaler and consumer replicas
//! at time scale 0.25, then a double interrupt, a SIGTERM, a failure at run time, a child that never comes up. Each
//! time the exit code is the documented one (contract::exit) and no child the lab started is left running.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use contract::exit;

use crate::{binary, heavy};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Starts `lab` with the demo profile at time scale 0.25, the real binaries, and `extra` arguments.
async fn start_lab(out: &Path, extra: &[&str]) -> procs::Child {
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    let scaledobject =
        testkit::workspace_root().join("manifests/components/keda/scaledobject.yaml");
    let defaults = [
        ("--test", "demo".to_string()),
        ("--time-scale", "0.25".into()),
        ("--scaledobject", scaledobject.display().to_string()),
        ("--consumer-bin", consumer.display().to_string()),
        ("--scaler-bin", scaler.display().to_string()),
        ("--live", "plain".into()),
        ("--out", out.display().to_string()),
        // The console runs beside every run: on a free port, its history beside the results (not in the cwd).
        ("--ui-port", "0".into()),
        ("--runs-dir", out.join("runs").display().to_string()),
    ];
    // `extra` replaces a default flag of the same name.
    let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value]);
        }
    }
    procs::Spawn::new(env!("CARGO_BIN_EXE_lab"))
        .args(&args)
        .start()
        .await
        .expect("lab starts")
}

/// The pids the lab names in its output: `scaler pid N` and the first replicas' `(pid N, ...)`.
fn announced_pids(lines: &[String]) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for line in lines {
        if let Some(rest) = line.split("scaler pid ").nth(1) {
            pids.extend(
                rest.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok()),
            );
        }
        if line.contains("consumer replica(s) ready")
            && let Some(list) = line
                .rsplit_once("(pid ")
                .map(|(_, l)| l.trim_end_matches(')'))
        {
            pids.extend(list.split(", ").filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    pids
}

/// Watches the lab's children (from its output and from /proc) until its first replicas are ready and `more` has
/// passed; returns every child pid seen. Panics if the lab exits or takes more than 60 s.
async fn children_once_ready(lab: &mut procs::Child, more: Duration) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready_at = None;
    loop {
        seen.extend(testkit::children_of(lab.pid()));
        let lines = lab.output_lines();
        if ready_at.is_none()
            && lines
                .iter()
                .any(|l| l.contains("consumer replica(s) ready"))
        {
            ready_at = Some(Instant::now());
        }
        if ready_at.is_some_and(|at| at.elapsed() >= more) {
            seen.extend(announced_pids(&lines));
            return seen;
        }
        assert!(
            lab.try_exited().is_none(),
            "the lab exited early:\n{}",
            lab.last_output(40)
        );
        assert!(
            Instant::now() < deadline,
            "no replica ready within 60 s:\n{}",
            lab.last_output(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most `timeout`) for the lab to exit, sampling its children meanwhile (a replica started during the
/// shutdown must be caught too); returns the exit code.
async fn exit_code(lab: &mut procs::Child, seen: &mut BTreeSet<u32>, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        seen.extend(testkit::children_of(lab.pid()));
        if let Some(status) = lab.wait(Duration::from_millis(50)).await {
            return status
                .code()
                .unwrap_or_else(|| panic!("lab ended by {status}:\n{}", lab.last_output(40)));
        }
        assert!(
            Instant::now() < deadline,
            "the lab did not exit within {timeout:?}:\n{}",
            lab.last_output(40)
        );
    }
}

/// Every pid in `pids` is gone (exited; a zombie awaiting its reaper counts), within 10 s.
async fn assert_all_gone(pids: &BTreeSet<u32>, lab: &procs::Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| !procs::is_gone(*p))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children still running after the lab exited: {left:?}\n{}",
            lab.last_output(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_interrupt_kills_every_child_at_once_and_exits_interrupted() {
    let _machine = heavy().await;
    let out = tempfile::tempdir().expect("temp dir");
    let mut lab = start_lab(out.path(), &[]).await;
    // Into the load, so the scale-up has had a chance to start more replicas.
    let mut seen = children_once_ready(&mut lab, Duration::from_secs(6)).await;
    assert!(seen.len() >= 2, "scaler and a replica: {seen:?}");
    assert!(lab.signal(SIGINT));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lab.signal(SIGINT));
    let second = Instant::now();
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(20)).await;
    assert_eq!(code, exit::INTERRUPTED, "{}", lab.last_output(40));
    assert!(
        second.elapsed() < Duration::from_secs(8),
        "a second interrupt exits at once, took {:?}",
        second.elapsed()
    );
    assert_all_gone(&seen, &lab).await;
    let output = lab.output_lines().join("\n");
    assert!(output.contains("SIGINT again: killed"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_child_writes_the_partial_report_and_exits_interrupted() {
    let _machine = heavy().await;
    let out = tempfile::tempdir().expect("temp dir");
    let mut lab = start_lab(out.path(), &[]).await;
    let mut seen = children_once_ready(&mut lab, Duration::from_secs(3)).await;
    assert!(seen.len() >= 2, "scaler and a replica: {seen:?}");
    assert!(lab.signal(SIGTERM));
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(40)).await;
    assert_eq!(code, exit::INTERRUPTED, "{}", lab.last_output(40));
    assert_all_gone(&seen, &lab).await;
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json")).expect("partial report.json"),
    )
    .expect("JSON report");
    assert_eq!(report["interrupted"], true);
    let output = lab.output_lines().join("\n");
    assert!(output.contains("drained after SIGTERM"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_once_the_children_run_stops_them_and_exits_runtime_error() {
    let _machine = heavy().await;
    let out = tempfile::tempdir().expect("temp dir");
    // The decisions log cannot be created (a directory has its name): the lab finds out once its children are up
    // and the controller is about to start.
    std::fs::create_dir(out.path().join("decisions.jsonl")).unwrap();
    let mut lab = start_lab(out.path(), &[]).await;
    let mut seen = BTreeSet::new();
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(60)).await;
    seen.extend(announced_pids(&lab.output_lines()));
    assert_eq!(code, exit::RUNTIME_ERROR, "{}", lab.last_output(40));
    assert!(seen.len() >= 2, "scaler and a replica ran: {seen:?}");
    assert_all_gone(&seen, &lab).await;
    let output = lab.output_lines().join("\n");
    assert!(output.contains("decisions.jsonl"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_never_comes_up_exits_target_not_ready_and_leaves_nothing() {
    let _machine = heavy().await;
    let out = tempfile::tempdir().expect("temp dir");
    // A "consumer" that fails at once: the scaler is up, the first replica never is.
    let broken = out.path().join("broken-consumer");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'broken: no such flag' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut lab = start_lab(out.path(), &["--consumer-bin", broken.to_str().unwrap()]).await;
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(40)).await;
    seen.extend(announced_pids(&lab.output_lines()));
    assert_eq!(code, exit::TARGET_NOT_READY, "{}", lab.last_output(40));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a failed start is reported without waiting out the start timeout: {:?}",
        started.elapsed()
    );
    assert!(!seen.is_empty(), "the scaler ran");
    assert_all_gone(&seen, &lab).await;
    let output = lab.output_lines().join("\n");
    assert!(
        output.contains("did not become ready") && output.contains("broken: no such flag"),
        "{output}"
    );

    // A scaler that exits at once: 3 as well.
    let mut lab = start_lab(out.path(), &["--scaler-bin", broken.to_str().unwrap()]).await;
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(30)).await;
    assert_eq!(code, exit::TARGET_NOT_READY, "{}", lab.last_output(40));
}

#[tokio::test]
async fn bad_input_exits_usage_before_starting_anything() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut seen = BTreeSet::new();
    let mut lab = start_lab(out.path(), &["--consumer-bin", "/nonexistent/consumer"]).await;
    let code = exit_code(&mut lab, &mut seen, Duration::from_secs(30)).await;
    assert_eq!(code, exit::USAGE, "{}", lab.last_output(40));
    assert!(seen.is_empty(), "started {seen:?}");
    let output = lab.output_lines().join("\n");
    assert!(
        output.contains("/nonexistent/consumer") && output.contains("cargo build -p consumer"),
        "{output}"
    );
    let mut lab = start_lab(out.path(), &["--test", "no-such-profile"]).await;
    assert_eq!(
        exit_code(&mut lab, &mut seen, Duration::from_secs(30)).await,
        exit::USAGE
    );
    // A bad SLO: the field, the text and what is allowed, before anything starts.
    let mut lab = start_lab(out.path(), &["--slo", "p95<=500ms"]).await;
    assert_eq!(
        exit_code(&mut lab, &mut seen, Duration::from_secs(30)).await,
        exit::USAGE
    );
    assert!(seen.is_empty(), "started {seen:?}");
    let output = lab.output_lines().join("\n");
    assert!(
        output.contains("--slo: slo.p95") && output.contains("allowed"),
        "{output}"
    );
}
