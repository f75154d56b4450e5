//! The `generator` binary end to end against the real consumer: thresholds pass and fail with their exit codes,
//! SIGTERM writes a partial report, `wait` succeeds and times out, `profiles show` round-trips, bad input is a usage
//! error, and the verdict reaches the termination log.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use generator::Profile;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_generator");

async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN).args(args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("generator finished in time")
    .expect("generator ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_that_hold_exit_0_and_write_the_report() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("cli-pod", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("out/report.json");
    let termination = dir.path().join("termination-log");
    std::fs::write(&termination, "").unwrap();
    let (code, stdout, stderr) = run(&[
        "run",
        "--url",
        &c.url,
        "--rate",
        "50",
        "--duration",
        "2s",
        "--path",
        "/health",
        "--no-metrics",
        "--threshold",
        "p95<5s",
        "--threshold",
        "errors<1%,dropped<0.1%",
        "--threshold",
        "rate>=45",
        "--report",
        report.to_str().unwrap(),
        "--termination-log",
        termination.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert!(stdout.contains("GET /health"), "{stdout}");
    assert!(
        stderr.contains("rate"),
        "progress lines on stderr: {stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for key in [
        "requests",
        "achieved_rate",
        "errors",
        "dropped",
        "latency",
        "endpoints",
        "intervals",
        "served_by",
    ] {
        assert!(json.get(key).is_some(), "report lacks {key}");
    }
    assert_eq!(json["requests"], 100);
    assert!(json["latency"]["p95_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(json["served_by"]["cli-pod"], 100);
    assert_eq!(json["thresholds"].as_array().unwrap().len(), 4);
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let verdict = std::fs::read_to_string(&termination).unwrap();
    assert!(verdict.starts_with("PASS"), "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_threshold_exits_1_and_names_it() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("cli-pod", &[]).await;
    let (code, stdout, _) = run(&[
        "run",
        "--url",
        &c.url,
        "--rate",
        "20",
        "--duration",
        "1s",
        "--path",
        "/health",
        "--no-metrics",
        "--quiet",
        "--threshold",
        "p50<1us",
        "--threshold",
        "errors<1%",
    ])
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL thresholds breached: p50<1us"),
        "{stdout}"
    );
    assert!(stdout.contains("threshold ok   errors<1%"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_gives_interval_lines_and_a_report_line() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("cli-pod", &[]).await;
    let (code, stdout, _) = run(&[
        "run",
        "--url",
        &c.url,
        "--rate",
        "40",
        "--duration",
        "2s",
        "--path",
        "/health",
        "--no-metrics",
        "--output",
        "json",
        "--interval",
        "500ms",
    ])
    .await;
    assert_eq!(code, 0, "{stdout}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").is_some())
        .collect();
    let intervals = lines.iter().filter(|v| v["type"] == "interval").count();
    assert!((3..=5).contains(&intervals), "{intervals} interval lines");
    let report = lines
        .iter()
        .find(|v| v["type"] == "report")
        .expect("report line");
    assert_eq!(report["report"]["requests"], 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_a_partial_report_and_exits_5() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("cli-pod", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("partial.json");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--url",
            &c.url,
            "--rate",
            "50",
            "--duration",
            "60s",
            "--path",
            "/health",
            "--no-metrics",
            "--interval",
            "200ms",
            "--report",
            report.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for the second progress line: the load is running.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut progress = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with('[') {
                progress += 1;
                if progress == 2 {
                    break;
                }
            }
        }
    })
    .await
    .expect("progress lines");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(5));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert_eq!(json["exit_code"], 5);
    let requests = json["requests"].as_u64().unwrap();
    assert!((10..3000).contains(&requests), "{requests}");
    assert!(json["verdict"].as_str().unwrap().starts_with("INTERRUPTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_succeeds_on_a_ready_target_and_times_out_on_a_dead_one() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("cli-pod", &[]).await;
    let (code, _, stderr) = run(&["wait", "--url", &c.url, "--timeout", "10s"]).await;
    assert_eq!(code, 0, "{stderr}");
    // A port that nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let started = std::time::Instant::now();
    let (code, _, stderr) = run(&[
        "wait",
        "--url",
        &format!("http://{dead}"),
        "--timeout",
        "1s",
        "--interval",
        "200ms",
    ])
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("was not ready within"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn profiles_show_parses_back_to_the_same_profile() {
    let _cpu = common::shared().await;
    let (code, list, _) = run(&["profiles"]).await;
    assert_eq!(code, 0);
    for name in Profile::builtin_names() {
        assert!(list.contains(name), "{list}");
        let (code, yaml, stderr) = run(&["profiles", "show", name]).await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            Profile::from_yaml(&yaml).unwrap(),
            Profile::builtin(name).unwrap(),
            "{name}"
        );
    }
    let (code, _, stderr) = run(&["profiles", "show", "nope"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown profile"), "{stderr}");
}

#[tokio::test]
async fn bad_input_is_a_usage_error_with_a_clear_message() {
    let _cpu = common::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let bad_profile = dir.path().join("p.yaml");
    std::fs::write(
        &bad_profile,
        "name: x\nstages:\n  - duration: 10s\n    rate: fast\nrequests: []\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--test",
                "nope",
                "--no-metrics",
            ],
            "unknown profile",
        ),
        (
            vec![
                "run",
                "--url",
                "ftp://x",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--no-metrics",
            ],
            "scheme",
        ),
        (
            vec![
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--threshold",
                "p95<fast",
                "--no-metrics",
            ],
            "threshold",
        ),
        (
            // The SLO's refusal names the clause, the text and what is allowed.
            vec![
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--slo",
                "p95<500ms,p42<1s",
                "--no-metrics",
            ],
            "slo.p42 = \"p42<1s\"",
        ),
        (
            vec![
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--profile-file",
                bad_profile.to_str().unwrap(),
                "--no-metrics",
            ],
            "line 4",
        ),
        (
            vec![
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--rate",
                "0",
                "--duration",
                "1s",
            ],
            "must be",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, stderr) = run(&args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_target_that_never_gets_ready_exits_3() {
    let _cpu = common::shared().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (code, _, stderr) = run(&[
        "run",
        "--url",
        &format!("http://{dead}"),
        "--test",
        "demo",
        "--wait-ready",
        "1s",
        "--no-metrics",
    ])
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("TARGET NOT READY"), "{stderr}");
}
