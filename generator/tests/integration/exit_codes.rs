//! The generator's exit codes for the causes `cli.rs` does not already cover (one table, `contract::exit`,
//! docs/exit-codes.md): run-time failures exit 6, an interrupted readiness wait exits 5, whether in `wait` or in
//! `run`. Thresholds (1), usage (2), a target never ready (3) and an interrupted run (5) are in `cli.rs`, a
//! saturated generator (4) in `self_check.rs`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use generator::exit;
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

/// Start the generator, wait for a stderr line containing `ready_when`, send SIGTERM, and return its exit code and
/// everything it wrote on stderr. The pipe is read to the end, so the child never blocks on a full pipe.
async fn interrupt_when(args: &[&str], ready_when: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let needle = ready_when.to_string();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let reader = tokio::spawn(async move {
        let mut all = String::new();
        let mut seen_tx = Some(seen_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&needle)
                && let Some(tx) = seen_tx.take()
            {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    tokio::time::timeout(Duration::from_secs(20), seen_rx)
        .await
        .expect("the line that says the generator is waiting")
        .expect("stderr open");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    let stderr = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("stderr closed")
        .unwrap();
    (status.code(), stderr)
}

#[tokio::test]
async fn a_metrics_port_in_use_is_a_runtime_error() {
    let _cpu = common::shared().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = run(&[
        "run",
        "--url",
        "http://127.0.0.1:1",
        "--rate",
        "5",
        "--duration",
        "1s",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        &port,
    ])
    .await;
    assert_eq!(code, exit::RUNTIME_ERROR, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_is_a_runtime_error_after_the_summary() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("exit-pod", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let report = not_a_dir.join("report.json");
    let (code, stdout, stderr) = run(&[
        "run",
        "--url",
        &c.url,
        "--rate",
        "10",
        "--duration",
        "1s",
        "--path",
        "/health",
        "--no-metrics",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, exit::RUNTIME_ERROR, "{stderr}");
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert!(
        stdout.contains("verdict: PASS"),
        "the run itself held: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_readiness_wait_exits_5_in_wait_and_in_run() {
    let _cpu = common::shared().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{dead}");
    let (code, stderr) = interrupt_when(
        &[
            "wait",
            "--url",
            &url,
            "--timeout",
            "60s",
            "--interval",
            "200ms",
        ],
        "waiting up to",
    )
    .await;
    assert_eq!(code, Some(exit::INTERRUPTED), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let (code, stderr) = interrupt_when(
        &[
            "run",
            "--url",
            &url,
            "--test",
            "demo",
            "--wait-ready",
            "60s",
            "--no-metrics",
        ],
        "waiting up to",
    )
    .await;
    assert_eq!(code, Some(exit::INTERRUPTED), "{stderr}");
}
