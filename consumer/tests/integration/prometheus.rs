//! A real Prometheus (Debian's `prometheus`, on 127.0.0.1) scrapes a real consumer process; the test asserts through
//! Prometheus' HTTP API that request, backlog and allocator series arrive with the documented labels, and runs
//! `promtool check metrics` on the exposition.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testkit::{Prometheus, Spawned};
use tokio::io::AsyncWriteExt;

fn sample(result: &Value) -> Option<f64> {
    result.as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

async fn start_consumer(args: &[&str]) -> Spawned {
    let mut argv = vec![
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--pod-name",
        "prom-pod",
    ];
    argv.extend_from_slice(args);
    Spawned::start(env!("CARGO_BIN_EXE_consumer"), &argv, &[], &["http"])
        .await
        .expect("consumer starts")
}

#[tokio::test]
async fn prometheus_scrapes_request_backlog_and_allocator_series_with_the_documented_labels() {
    let _machine = crate::common::shared_machine().await;
    let consumer = start_consumer(&["--executors", "1"]).await;
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    let prometheus = Prometheus::start(&[consumer.addr("http")], Duration::from_millis(200))
        .await
        .expect("prometheus starts");

    // Traffic: one sync request, then a backlog: one long job holding the only executor, two queued behind it.
    let sync = client
        .post(format!("{base}/load/io"))
        .body(r#"{"delay_ms": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200);
    let mut job_ids = Vec::new();
    for delay in [20_000, 1, 1] {
        let body = format!(r#"{{"delay_ms": {delay}, "mode": "async"}}"#);
        let accepted: Value = client
            .post(format!("{base}/load/io"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(accepted["state"], "queued", "{accepted}");
        job_ids.push(accepted["job_id"].as_str().unwrap().to_owned());
    }
    let job = client
        .get(format!("{base}/jobs/{}", job_ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 200);

    let timeout = Duration::from_secs(20);
    let backlog = match prometheus
        .wait_for("consumer_jobs_queued", timeout, |r| sample(r) == Some(2.0))
        .await
    {
        Ok(backlog) => backlog,
        Err(error) => {
            let root = client
                .get(format!("{base}/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let mut blocker = String::new();
            for id in &job_ids {
                blocker += &client
                    .get(format!("{base}/jobs/{id}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                blocker += "\n";
            }
            panic!(
                "queued: {error:?}\nroot: {root}\nblocker: {blocker}\n{}",
                consumer.output_lines().join("\n")
            );
        }
    };
    let labels = &backlog[0]["metric"];
    assert_eq!(labels["job"], "consumer");
    assert_eq!(labels["instance"], consumer.addr("http").to_string());
    prometheus
        .wait_for("consumer_jobs_running", timeout, |r| sample(r) == Some(1.0))
        .await
        .expect("running");
    prometheus
        .wait_for("consumer_executors", timeout, |r| sample(r) == Some(1.0))
        .await
        .expect("executors");

    let requests = prometheus
        .wait_for(r#"http_requests_total{route="/load/io"}"#, timeout, |r| {
            r.as_array().is_some_and(|a| a.len() >= 2)
        })
        .await
        .expect("request series");
    let mut statuses: Vec<String> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            assert_eq!(series["metric"]["method"], "POST");
            series["metric"]["status"].as_str().unwrap().to_owned()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["200", "202"]);
    prometheus
        .wait_for(
            r#"http_requests_total{route="/jobs/{id}",method="GET",status="200"}"#,
            timeout,
            |r| sample(r) == Some(1.0),
        )
        .await
        .expect("route template, not the raw path");
    for bucket in ["0.005", "2"] {
        let query = format!(
            r#"http_request_duration_seconds_bucket{{route="/load/io",method="POST",le="{bucket}"}}"#
        );
        prometheus
            .wait_for(&query, timeout, |r| sample(r).is_some())
            .await
            .expect("latency buckets");
    }
    prometheus
        .wait_for("http_requests_in_flight", timeout, |r| sample(r).is_some())
        .await
        .expect("in flight");

    // Allocator pressure: the counting allocator is installed in the binary.
    prometheus
        .wait_for("consumer_allocations_total", timeout, |r| {
            sample(r).is_some_and(|v| v > 0.0)
        })
        .await
        .expect("allocations");
    prometheus
        .wait_for("rate(consumer_allocated_bytes_total[2s])", timeout, |r| {
            sample(r).is_some_and(|v| v > 0.0)
        })
        .await
        .expect("allocation rate");
    prometheus
        .wait_for("consumer_heap_bytes", timeout, |r| {
            sample(r).is_some_and(|v| v > 0.0)
        })
        .await
        .expect("heap bytes");

    prometheus
        .wait_for(
            r#"consumer_jobs_total{kind="io",mode="sync",outcome="done"}"#,
            timeout,
            |r| sample(r) == Some(1.0),
        )
        .await
        .expect("job outcomes");
    prometheus
        .wait_for("consumer_job_queue_wait_seconds_count", timeout, |r| {
            sample(r).is_some()
        })
        .await
        .expect("queue wait");
    prometheus
        .wait_for(
            r#"consumer_job_duration_seconds_count{kind="io"}"#,
            timeout,
            |r| sample(r).is_some(),
        )
        .await
        .expect("job duration");
    let build = prometheus
        .wait_for("consumer_build_info", timeout, |r| sample(r) == Some(1.0))
        .await
        .expect("build info");
    assert_eq!(build[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
    for name in [
        "consumer_memory_budget_bytes",
        "consumer_memory_held_bytes",
        "consumer_sustained_workers",
        "consumer_cpu_burn_seconds_total",
    ] {
        prometheus
            .wait_for(name, timeout, |r| sample(r).is_some())
            .await
            .expect(name);
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        prometheus
            .wait_for(name, timeout, |r| sample(r).is_some_and(|v| v > 0.0))
            .await
            .expect(name);
    }
    // Stop the long job so the consumer has nothing left to do.
    client
        .delete(format!("{base}/jobs/{}", job_ids[0]))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn promtool_finds_nothing_to_lint_in_the_exposition() {
    let _machine = crate::common::shared_machine().await;
    let consumer = start_consumer(&[]).await;
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    // Touch every kind of series first, so the lint sees histograms with samples and labelled counters.
    client
        .post(format!("{base}/load/cpu"))
        .body(r#"{"duration_ms": 5}"#)
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/load/memory"))
        .body(r#"{"size_mb": 1, "duration_ms": 1}"#)
        .send()
        .await
        .unwrap();
    client.get(format!("{base}/nowhere")).send().await.unwrap();
    let exposition = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package `prometheus`)");
    let mut stdin = promtool.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), promtool.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{report}\n--- exposition ---\n{exposition}"
    );
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );
}
