//! Chaos end to end: the real scaler and consumer replicas under load, faults injected on schedule, and the report's
//! `chaos` section checked against what must have happened. A killed replica is replaced after its back-off and the
//! requests that failed are exactly those that were open on it (the generator's own per-request counts); a frozen
//! replica leaves the targets (no request takes it while it is out) and returns; a killed scaler brings KEDA's
//! fallback for an AverageValue trigger, and a Value trigger (no fallback in KEDA) holds the replica count.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use lab::{LabError, LabOutcome, run_with};
use load::report::FaultReport;
use tokio_util::sync::CancellationToken;

use crate::{Wrapper, binary, heavy, process_exists};

/// A ScaledObject polling every second, with a fallback of 3 replicas after one failure, and the given triggers.
fn scaledobject(dir: &Path, min: u32, max: u32, triggers: &str) -> String {
    let text = format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: chaos
  namespace: lab
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: consumer
  pollingInterval: 1
  cooldownPeriod: 30
  minReplicaCount: {min}
  maxReplicaCount: {max}
  fallback:
    failureThreshold: 1
    replicas: 3
  triggers:
{triggers}"#
    );
    let path = dir.join(format!("scaledobject-{min}-{max}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Backlog per replica, far above what the test's load makes: proposes the minimum unless it fails.
const AVERAGE_VALUE: &str = r#"    - type: external
      name: backlog
      metricType: AverageValue
      metadata:
        scalerAddress: scaler:6000
        trigger: backlog
        targets: consumer:8080
        target: "1000"
"#;

/// p95 latency across the replicas, a Value metric, under its target at the test's load.
const VALUE: &str = r#"    - type: external
      name: latency-p95
      metricType: Value
      metadata:
        scalerAddress: scaler:6000
        trigger: latency
        targets: consumer:8080
        quantile: "0.95"
        window: 10s
        target: "5"
"#;

/// A constant rate of 200 ms sync I/O requests for `seconds` (before the time scale), and the chaos list.
fn profile(dir: &Path, rate: f64, seconds: u32, chaos: &str) -> String {
    let text = format!(
        "name: chaos-test\nstart_rate: {rate}\nstages:\n  - duration: {seconds}s\n    rate: {rate}\nrequests:\n  - path: /load/io\n    body: {{delay_ms: 200, mode: sync}}\nchaos:\n{chaos}"
    );
    let path = dir.join("profile.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn run_lab(dir: &Path, extra: &[&str]) -> Result<LabOutcome, LabError> {
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    assert!(
        consumer.is_file() && scaler.is_file(),
        "build the binaries first: cargo build -p consumer -p scaler"
    );
    let out = dir.join("out");
    let mut argv: Vec<String> = [
        "lab",
        "--time-scale",
        "0.5",
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--settle",
        "1s",
        "--live",
        "plain",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = Wrapper::try_parse_from(argv)
        .expect("lab arguments parse")
        .lab;
    tokio::time::timeout(
        Duration::from_secs(90),
        run_with(args, CancellationToken::new()),
    )
    .await
    .expect("the lab finished within 90 s")
}

fn only_fault(outcome: &LabOutcome) -> &FaultReport {
    let chaos = outcome.report.chaos.as_ref().expect("a chaos section");
    assert_eq!(chaos.faults.len(), 1, "{chaos:#?}");
    &chaos.faults[0]
}

fn assert_no_child_left(outcome: &LabOutcome) {
    for pid in &outcome.pids {
        assert!(!process_exists(*pid), "child {pid} is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_killed_replica_is_replaced_and_loses_exactly_its_open_requests() {
    let _machine = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    // Two replicas throughout (min = max), 30 req/s of 200 ms: ~3 open on each at any time.
    let so = scaledobject(dir.path(), 2, 2, AVERAGE_VALUE);
    // Profile times, halved by --time-scale 0.5: the kill at 3 s, a 1 s back-off, 12 s of load.
    let test = profile(
        dir.path(),
        30.0,
        24,
        "  - {at: 6s, action: kill, target: replica-1, duration: 2s}\n",
    );
    let outcome = run_lab(
        dir.path(),
        &[
            "--test",
            &test,
            "--scaledobject",
            &so,
            "--chaos-threshold",
            "failed<1,recovery<60s",
        ],
    )
    .await
    .expect("the lab ran");
    let f = only_fault(&outcome);
    println!("{f:#?}");
    assert_eq!(
        f.hit.as_deref().map(|h| h.starts_with("consumer-1 ")),
        Some(true)
    );
    assert!((f.at_s - 3.0).abs() < 0.5, "at {}", f.at_s);

    // The requests that failed are exactly those that were open on it, and nothing else failed in the whole run.
    let in_flight = f.in_flight_at_fault.expect("counted");
    assert!(in_flight >= 1, "nothing was open on the replica: {f:#?}");
    assert_eq!(f.failed_on_target, Some(in_flight));
    assert_eq!(f.lost, in_flight, "{:?}", f.by_class);
    assert_eq!(outcome.report.errors.total, in_flight);
    assert_eq!(f.timed_out + f.dropped, 0);

    // Replaced after the back-off (1 s), by a new replica that then served.
    let ready = f
        .replacement_ready_after_s
        .expect("a replacement got ready");
    assert!(
        ready >= 1.0,
        "ready {ready} s after the kill: before the back-off"
    );
    let replacement = f.replacement.as_deref().expect("named");
    assert_ne!(replacement, "consumer-1");
    assert!(
        outcome.report.served_by.contains_key(replacement),
        "{:?}",
        outcome.report.served_by
    );
    assert!(f.replacement_serving_after_s.expect("served") >= ready);
    assert!(f.recovered_after_s.is_some(), "never recovered: {f:#?}");

    // The thresholds decide the exit code: requests failed, so `failed<1` breached.
    let chaos = outcome.report.chaos.as_ref().unwrap();
    assert!(
        !chaos.thresholds[0].passed && chaos.thresholds[1].passed,
        "{:#?}",
        chaos.thresholds
    );
    assert_eq!(outcome.exit_code, contract::exit::THRESHOLDS_BREACHED);
    assert_eq!(
        outcome.report.exit_code,
        contract::exit::THRESHOLDS_BREACHED
    );
    assert!(
        outcome.report.verdict.contains("failed<1"),
        "{}",
        outcome.report.verdict
    );
    let summary = std::fs::read_to_string(outcome.out_dir.join("summary.txt")).unwrap();
    assert!(
        summary.contains("chaos: 1 fault(s)") && summary.contains("FAILED"),
        "{summary}"
    );
    assert_no_child_left(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_frozen_replica_leaves_the_targets_and_returns() {
    let _machine = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let so = scaledobject(dir.path(), 2, 2, AVERAGE_VALUE);
    // Frozen at 3 s for 4 s (after the time scale).
    let test = profile(
        dir.path(),
        20.0,
        24,
        "  - {at: 6s, action: freeze, target: replica-2, duration: 8s}\n",
    );
    let outcome = run_lab(dir.path(), &["--test", &test, "--scaledobject", &so])
        .await
        .expect("the lab ran");
    let f = only_fault(&outcome);
    println!("{f:#?}");
    assert_eq!(
        f.hit.as_deref().map(|h| h.starts_with("consumer-2 ")),
        Some(true)
    );
    // Its readiness failed within the probe's bound (2 failed 0.5 s probes, with slack for a loaded machine) and it
    // left the targets; no request took it while it was out.
    let left = f.left_targets_after_s.expect("it left the targets");
    assert!(left < 2.5, "left after {left} s");
    assert_eq!(f.picked_while_out, Some(0));
    // Back after the SIGCONT (4 s), as the same replica, serving again.
    let back = f.replacement_ready_after_s.expect("it came back");
    assert!((4.0..8.0).contains(&back), "back after {back} s");
    assert_eq!(f.replacement.as_deref(), Some("consumer-2"));
    assert!(f.replacement_serving_after_s.expect("served again") >= back);
    // Frozen, not killed: what was open on it finished late, and nothing was lost.
    assert_eq!(f.failed_on_target, Some(0));
    assert!(f.slo_hurt, "the hung requests broke p95<500ms: {f:#?}");
    assert!(f.recovered_after_s.is_some_and(|r| r >= 4.0), "{f:#?}");
    assert_eq!(outcome.exit_code, 0);
    assert_no_child_left(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_killed_scaler_brings_fallback_for_average_value_and_a_hold_for_value() {
    let _machine = heavy().await;
    // The scaler is down from 2 s to 5 s (after the time scale); polls every 0.5 s; fallback after 1 failure.
    let chaos = "  - {at: 4s, action: kill-scaler, duration: 6s}\n";

    // AverageValue: KEDA's fallback reports target x 3, so 1 replica becomes 3.
    let dir = tempfile::tempdir().unwrap();
    let so = scaledobject(dir.path(), 1, 4, AVERAGE_VALUE);
    let test = profile(dir.path(), 5.0, 16, chaos);
    let outcome = run_lab(dir.path(), &["--test", &test, "--scaledobject", &so])
        .await
        .expect("the lab ran");
    let f = only_fault(&outcome);
    println!("{f:#?}");
    assert_eq!(
        f.hit.as_deref().map(|h| h.starts_with("scaler ")),
        Some(true)
    );
    let a = &f.autoscaler;
    assert!(a.failed_readings >= 1 && a.fallback_steps >= 1, "{a:#?}");
    assert!(
        a.fallback_detail
            .as_deref()
            .is_some_and(|d| d.starts_with("backlog: fallback to 3")),
        "{a:#?}"
    );
    assert!(a.changes.iter().any(|c| c.contains(" 1 -> 3:")), "{a:#?}");
    assert_eq!(a.value_errors, 0);
    // The scaler came back after its 3 s down time and the triggers were read again.
    let back = f.replacement_ready_after_s.expect("the scaler restarted");
    assert!(back >= 3.0, "back after {back} s");
    assert!(f.replacement_serving_after_s.is_some(), "{f:#?}");
    assert_no_child_left(&outcome);

    // Value: no fallback in KEDA; the failing metric is an error and the HPA holds 2 replicas (the fallback's 3 is
    // not applied, and no scale-down either).
    let dir = tempfile::tempdir().unwrap();
    let so = scaledobject(dir.path(), 2, 4, VALUE);
    let test = profile(dir.path(), 5.0, 16, chaos);
    let outcome = run_lab(dir.path(), &["--test", &test, "--scaledobject", &so])
        .await
        .expect("the lab ran");
    let f = only_fault(&outcome);
    println!("{f:#?}");
    let a = &f.autoscaler;
    assert!(a.value_errors >= 2, "{a:#?}");
    assert_eq!(a.fallback_steps, 0, "{a:#?}");
    assert!(a.changes.is_empty(), "the count moved: {a:#?}");
    let during: Vec<_> = outcome
        .decisions
        .iter()
        .filter(|d| d.metrics.iter().any(|m| m.status.starts_with("error")))
        .collect();
    assert!(!during.is_empty());
    assert!(
        during.iter().all(|d| d.current == 2 && d.desired == 2),
        "{during:#?}"
    );
    assert!(f.replacement_ready_after_s.is_some());
    assert_no_child_left(&outcome);
}

#[tokio::test]
async fn chaos_bad_faults_and_thresholds_are_usage_errors_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let so = scaledobject(dir.path(), 1, 2, AVERAGE_VALUE);
    let test = profile(dir.path(), 5.0, 10, "  - {at: 2s, action: kill}\n");
    for (extra, wanted) in [
        (vec!["--chaos", "at=30s,action=kill"], "not inside the load"),
        (vec!["--chaos", "at=3s,action=explode"], "unknown action"),
        (vec!["--chaos", "at=3s,action=freeze"], "required"),
        (vec!["--chaos", "at=3x,action=kill"], "invalid duration"),
        (
            vec!["--chaos-threshold", "recovery>3s"],
            "expected NAME<VALUE",
        ),
    ] {
        let mut args = vec!["--test", test.as_str(), "--scaledobject", so.as_str()];
        args.extend(extra.iter());
        let err = run_lab(dir.path(), &args).await.expect_err("refused");
        assert_eq!(err.exit_code(), contract::exit::USAGE, "{err}");
        assert!(err.to_string().contains(wanted), "{extra:?}: {err}");
    }
    // A bad entry in the profile's own list names its field and line.
    let bad = profile(
        dir.path(),
        5.0,
        10,
        "  - {at: 2s, action: kill, duration: 0s}\n",
    );
    let err = run_lab(dir.path(), &["--test", &bad, "--scaledobject", &so])
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("chaos[0].duration") && err.to_string().contains("line 10"),
        "{err}"
    );
    // The profile's own chaos_thresholds are checked as the flag's are, and named as the profile's.
    let judged = profile(
        dir.path(),
        5.0,
        10,
        "  - {at: 2s, action: kill}\nchaos_thresholds: recovery>3s\n",
    );
    let err = run_lab(dir.path(), &["--test", &judged, "--scaledobject", &so])
        .await
        .expect_err("refused");
    assert_eq!(err.exit_code(), contract::exit::USAGE, "{err}");
    assert!(
        err.to_string().contains("the profile's chaos_thresholds")
            && err.to_string().contains("expected NAME<VALUE"),
        "{err}"
    );
}
