//! SIGTERM with requests in flight, on a real consumer process: readiness flips first, no request is dropped,
//! queued async work is cancelled, and the process exits 0.

use std::time::{Duration, Instant};

use testkit::Spawned;

#[tokio::test]
async fn sigterm_with_requests_in_flight_drops_none_flips_readiness_first_and_exits_zero() {
    let _machine = crate::common::shared_machine().await;
    let mut consumer = Spawned::start(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--executors",
            "2",
            "--shutdown-grace",
            "10s",
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts");
    let base = consumer.url("http");
    let client = reqwest::Client::new();

    // Four 1.5 s sync requests on two executors: two run, two wait for a slot. Plus a queued async job.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let url = format!("{base}/load/io");
        in_flight.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .body(r#"{"delay_ms": 1500}"#)
                .send()
                .await
                .expect("request not dropped");
            (response.status(), Instant::now())
        }));
    }
    testkit::poll_json(
        &client,
        &format!("{base}/"),
        Duration::from_secs(10),
        |root| root["load"]["jobs_running"] == 2 && root["load"]["jobs_queued"] == 2,
    )
    .await
    .expect("requests never got in flight");

    consumer.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let ready_flipped = loop {
        let response = client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("still serving while draining");
        if response.status() == 503 {
            break Instant::now();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "readiness did not flip promptly"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let refused = client
        .post(format!("{base}/load/io"))
        .body(r#"{"delay_ms": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "new work is refused while draining");

    for request in in_flight {
        let (status, finished) = request.await.unwrap();
        assert_eq!(status, 200, "in-flight request completed");
        assert!(
            ready_flipped < finished,
            "readiness flipped before in-flight work finished"
        );
    }
    let exit = consumer
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("process exits after the drain");
    assert_eq!(
        exit.code(),
        Some(0),
        "exit status: {exit:?}\n{}",
        consumer.output_lines().join("\n")
    );
    let output = consumer.output_lines().join("\n");
    assert!(
        output.contains("draining") && output.contains("drained"),
        "{output}"
    );
    assert!(
        !output.contains("grace period over"),
        "nothing needed cutting short: {output}"
    );
}

#[tokio::test]
async fn sigint_on_an_idle_process_exits_zero_promptly_and_cancels_queued_jobs() {
    let _machine = crate::common::shared_machine().await;
    let mut consumer = Spawned::start(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--executors",
            "1",
            "--shutdown-grace",
            "1s",
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts");
    let base = consumer.url("http");
    let client = reqwest::Client::new();
    // A job longer than the grace period: it is cut short (cancelled) when the grace period ends.
    for _ in 0..2 {
        let accepted = client
            .post(format!("{base}/load/io"))
            .body(r#"{"delay_ms": 30000, "mode": "async"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 202);
    }
    let started = Instant::now();
    consumer.signal(libc::SIGINT);
    let exit = consumer
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(exit.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "bounded by the 1 s grace: {:?}",
        started.elapsed()
    );
    let output = consumer.output_lines().join("\n");
    assert!(output.contains("grace period over"), "{output}");
}
