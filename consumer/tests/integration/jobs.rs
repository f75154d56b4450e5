//! Async jobs, the bounds and the drain, in process over TCP: job lifecycle with state, timings and results; the
//! queue bound (429) and the bounded sync slot wait (503); the memory budget; sustained jobs listed, filtered, stopped
//! and bounded; draining flips readiness, refuses new work and finishes what is in flight; FIFO job order.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::api::assert_field_error;
use crate::common::Server;

#[tokio::test]
async fn async_jobs_report_state_timings_and_results() {
    // An I/O job: its outcome depends on the wall clock only. A CPU job's would depend on the machine giving a
    // nice-19 load thread its CPU within the burn's wall cap, which this test does not control (a CPU job stopped by
    // the cap is reported `cancelled`, by design; the burn itself is tested in consumer/src/load/cpu.rs).
    let server = Server::start(&[]).await;
    let (status, headers, accepted) = server
        .post("/load/io", r#"{"delay_ms": 50, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["job_id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/jobs/{id}"));
    assert_eq!(accepted["location"], format!("/jobs/{id}"));
    let job = server.wait_job(id, Duration::from_secs(10)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "io");
    assert_eq!(job["mode"], "async");
    assert_eq!(job["served_by"], "test-pod");
    for key in [
        "created_at",
        "started_at",
        "finished_at",
        "queue_wait_seconds",
        "run_seconds",
    ] {
        assert!(job.get(key).is_some(), "{key} in {job}");
    }
    assert!(
        job["result"]["waited_seconds"].as_f64().unwrap() >= 0.05,
        "{job}"
    );
    assert_eq!(job["result"]["completed"], true, "{job}");

    // A finished job is left as it is by DELETE.
    let (status, _, body) = server.delete(&format!("/jobs/{id}")).await;
    assert_eq!(
        (status, body["state"].clone()),
        (StatusCode::OK, json!("done"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_sync_waits_are_bounded() {
    let server = Server::start(&[
        "--executors",
        "1",
        "--queue-size",
        "2",
        "--slot-wait-timeout",
        "300ms",
    ])
    .await;
    let (status, _, blocker) = server
        .post("/load/io", r#"{"delay_ms": 60000, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // A sync request waits for the busy slot, counts as queued, and gives up after --slot-wait-timeout.
    let waiter = server.post_in_background("/load/io", r#"{"delay_ms": 1}"#);
    server
        .wait_load(Duration::from_secs(5), |load| {
            load["jobs_queued"] == 1 && load["jobs_running"] == 1
        })
        .await;
    let (status, headers, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "executors_busy");
    assert_eq!(headers["retry-after"], "1");

    let (status, _, first) = server
        .post("/load/io", r#"{"delay_ms": 1, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = server
        .post("/load/io", r#"{"delay_ms": 1, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, body) = server
        .post("/load/io", r#"{"delay_ms": 1, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "queue_full");
    assert_eq!(headers["retry-after"], "1");
    let (status, _, body) = server.post("/load/io", r#"{"delay_ms": 1}"#).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "sync work shares the bound: {body}"
    );

    // Freeing the slot lets the queue drain.
    server
        .delete(&format!("/jobs/{}", blocker["job_id"].as_str().unwrap()))
        .await;
    let job = server
        .wait_job(first["job_id"].as_str().unwrap(), Duration::from_secs(5))
        .await;
    assert_eq!(job["state"], "done");
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"consumer_jobs_total{kind="io",mode="async",outcome="rejected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"consumer_jobs_total{kind="io",mode="sync",outcome="rejected"} 2"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_memory_budget_refuses_what_is_over_it_and_the_process_survives() {
    let server = Server::start(&["--memory-budget", "64MiB"]).await;
    let (status, headers, body) = server
        .post("/load/memory", r#"{"size_mb": 65, "duration_ms": 1}"#)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "memory_budget_exceeded");
    assert_eq!(body["budget_bytes"], 64 << 20);
    assert_eq!(body["held_bytes"], 0);
    assert_eq!(body["requested_bytes"], 65 << 20);
    assert!(headers.contains_key("retry-after"));

    let (status, _, held) = server
        .post(
            "/load/memory",
            r#"{"size_mb": 48, "duration_ms": 3000, "mode": "async"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = server
        .post("/load/memory", r#"{"size_mb": 32, "duration_ms": 1}"#)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["held_bytes"], 48 << 20);
    let (status, _, body) = server
        .post("/load/memory", r#"{"size_mb": 16, "duration_ms": 1}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "what fits is still served: {body}");

    server
        .delete(&format!("/jobs/{}", held["job_id"].as_str().unwrap()))
        .await;
    server
        .wait_job(held["job_id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    let (status, _, body) = server
        .post("/load/memory", r#"{"size_mb": 64, "duration_ms": 1}"#)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the budget is returned after release: {body}"
    );
    let (status, _, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("consumer_memory_held_bytes 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"consumer_jobs_total{kind="memory",mode="sync",outcome="rejected"} 2"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sustained_jobs_can_be_listed_filtered_stopped_and_are_bounded() {
    let server = Server::start(&["--max-sustained-workers", "3"]).await;
    let (status, headers, first) = server
        .post(
            "/load/cpu/sustained",
            r#"{"workers": 2, "duration_seconds": 60, "complexity": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["state"], "running");
    let first_id = first["job_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/jobs/{first_id}"));
    let (status, _, second) = server
        .post(
            "/load/cpu/sustained",
            r#"{"workers": 1, "duration_seconds": 60, "complexity": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, body) = server
        .post("/load/cpu/sustained", r#"{"workers": 1}"#)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_sustained_workers");
    assert!(headers.contains_key("retry-after"));

    let (status, _, all) = server.get("/load/cpu/sustained/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["active_workers"], 3);
    assert_eq!(all["jobs"].as_array().unwrap().len(), 2);
    let (status, _, one) = server
        .get(&format!("/load/cpu/sustained/status?job_id={first_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["jobs"][0]["job_id"], first_id.as_str());
    let (status, _, body) = server.get("/load/cpu/sustained/status?job_id=nope").await;
    assert_field_error(status, &body, "job_id", "invalid_value", "status job_id");
    let (status, _, body) = server.get("/load/cpu/sustained/status?bogus=1").await;
    assert_field_error(status, &body, "bogus", "unknown_field", "status query");
    let (status, _, _) = server
        .get(&format!(
            "/load/cpu/sustained/status?job_id={}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = server
        .post(
            "/load/cpu/sustained/stop",
            &json!({"job_id": uuid::Uuid::new_v4()}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, stopped) = server
        .post(
            "/load/cpu/sustained/stop",
            &json!({"job_id": first_id}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stopped["stopped"], json!([first_id]));
    let job = server.wait_job(&first_id, Duration::from_secs(5)).await;
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["result"]["workers"], 2);
    let (_, _, stopped) = server.post("/load/cpu/sustained/stop", "{}").await;
    assert_eq!(stopped["stopped"], json!([second["job_id"]]));
    server
        .wait_job(second["job_id"].as_str().unwrap(), Duration::from_secs(5))
        .await;
    let (_, _, all) = server.get("/load/cpu/sustained/status").await;
    assert_eq!(all["active_workers"], 0);
    server.stop().await;
}

#[tokio::test]
async fn draining_flips_readiness_refuses_new_work_and_finishes_in_flight_work() {
    let mut server = Server::start(&["--executors", "1", "--shutdown-grace", "10s"]).await;
    let in_flight = server.post_in_background("/load/io", r#"{"delay_ms": 600}"#);
    let (status, _, queued) = server
        .post("/load/io", r#"{"delay_ms": 1, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let queued_id = queued["job_id"].as_str().unwrap().to_owned();
    server
        .wait_load(Duration::from_secs(5), |load| load["jobs_running"] == 1)
        .await;

    server.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, body) = server.get("/ready").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body, json!({"status": "draining"}));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never flipped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "readiness flips before in-flight work finishes"
    );
    let (status, _, body) = server.post("/load/io", r#"{"delay_ms": 1}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "draining");
    let (_, _, job) = server.get(&format!("/jobs/{queued_id}")).await;
    assert_eq!(
        job["state"], "cancelled",
        "queued jobs are cancelled with their state recorded: {job}"
    );
    let (status, _, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK, "liveness stays 200 while draining");

    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "in-flight request finished: {body}");
    server.stop().await;
}

#[tokio::test]
async fn queued_jobs_start_in_submission_order() {
    let server = Server::start(&["--executors", "1"]).await;
    let (status, _, blocker) = server
        .post("/load/io", r#"{"delay_ms": 300, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut ids = Vec::new();
    for _ in 0..8 {
        let (status, _, accepted) = server
            .post("/load/io", r#"{"delay_ms": 2, "mode": "async"}"#)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(accepted["job_id"].as_str().unwrap().to_owned());
    }
    let (_, _, root) = server.get("/").await;
    assert_eq!(
        root["load"]["jobs_queued"], 8,
        "all wait behind the blocker: {root}"
    );
    let blocker = server
        .wait_job(blocker["job_id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    let mut previous_start = blocker["started_at"].as_str().unwrap().to_owned();
    for id in &ids {
        let job = server.wait_job(id, Duration::from_secs(10)).await;
        let started = job["started_at"].as_str().unwrap().to_owned();
        assert!(
            started >= previous_start,
            "FIFO: {id} started at {started}, before its predecessor ({previous_start})"
        );
        let waited = job["queue_wait_seconds"].as_f64().unwrap();
        assert!(waited > 0.2, "it waited for the blocker: {job}");
        previous_start = started;
    }
    server.stop().await;
}
