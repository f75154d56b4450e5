//! Liveness and readiness stay fast (under 50 ms each) while sustained load keeps every core busy.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::Spawned;

#[tokio::test]
async fn probes_answer_under_50ms_while_every_core_burns() {
    let _machine = crate::common::whole_machine().await;
    let consumer = Spawned::start(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-sustained-workers",
            "64",
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts");
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

    // Twice as many burning threads as cores, plus executors busy with CPU work.
    let mut workers = 0;
    while workers < cores * 2 {
        let batch = (cores * 2 - workers).min(4);
        let response = client
            .post(format!("{base}/load/cpu/sustained"))
            .body(format!(
                r#"{{"workers": {batch}, "duration_seconds": 60, "complexity": 5}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        workers += batch;
    }
    for _ in 0..4 {
        client
            .post(format!("{base}/load/cpu"))
            .body(r#"{"duration_ms": 5000, "mode": "async"}"#)
            .send()
            .await
            .unwrap();
    }
    testkit::poll_json(
        &client,
        &format!("{base}/load/cpu/sustained/status"),
        Duration::from_secs(10),
        |status| status["active_workers"].as_u64() == Some((cores * 2) as u64),
    )
    .await
    .expect("every sustained worker running");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut latencies = Vec::new();
    for round in 0..60 {
        let path = if round % 2 == 0 { "/health" } else { "/ready" };
        let started = Instant::now();
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert!(
            elapsed < Duration::from_millis(200),
            "{path} took {elapsed:?} under full CPU load"
        );
        latencies.push(elapsed);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort();
    // Every probe must answer in under 50 ms. One outlier of 60 is tolerated (but still under 200 ms, above): on a
    // shared 2-core CI machine another process at normal priority can take the test client's core for a time slice,
    // which no server-side measure can prevent.
    let slow: Vec<_> = latencies
        .iter()
        .filter(|latency| **latency >= Duration::from_millis(50))
        .collect();
    assert!(
        slow.len() <= 1,
        "probes over 50 ms under full CPU load: {slow:?}"
    );
    println!(
        "probe latency under load: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );

    let stopped: Value = client
        .post(format!("{base}/load/cpu/sustained/stop"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!stopped["stopped"].as_array().unwrap().is_empty());
}
