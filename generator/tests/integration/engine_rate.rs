//! Open-model accuracy against the real consumer: 2000 req/s for 10 s lands within 2 %, with latency recorded.

use crate::common;

use std::time::Duration;

use generator::profile::RequestSpec;
use generator::{Profile, RunOptions, TargetSet};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achieved_rate_is_within_two_percent_at_2000_per_second() {
    let _cpu = common::alone().await;
    let consumer = common::start_consumer("rate-pod", &[]).await;
    let profile = Profile::constant(
        2000.0,
        Duration::from_secs(10),
        RequestSpec::new("GET", "/health", None),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut n = Vec::new();
        while let Some(i) = rx.recv().await {
            n.push(i);
        }
        n
    });
    let report = common::run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        RunOptions {
            max_in_flight: 2000,
            ..RunOptions::default()
        },
        None,
        Some(tx),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let intervals = collect.await.unwrap();

    assert_eq!(report.expected_requests, 20000.0);
    let rate_error = (report.achieved_rate - 2000.0).abs() / 2000.0;
    assert!(
        rate_error < 0.02,
        "achieved {:.1} req/s, {:.2}% off: {} requests in {:.2}s, dropped {}, errors {:?}, self-check {:?}",
        report.achieved_rate,
        rate_error * 100.0,
        report.requests,
        report.duration_s,
        report.dropped,
        report.errors,
        report.self_check
    );
    assert!(report.requests >= 19600, "{} requests", report.requests);
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(report.dropped, 0);
    assert!(report.latency.p50_ms > 0.0 && report.latency.p99_ms >= report.latency.p50_ms);
    assert!(report.latency.max_ms < 30_000.0);
    assert_eq!(
        report.served_by.get("rate-pod").copied(),
        Some(report.requests),
        "{:?}",
        report.served_by
    );
    // One progress interval per second, each near the target rate once the run is under way.
    assert!(
        (9..=11).contains(&intervals.len()),
        "{} intervals",
        intervals.len()
    );
    for i in &intervals[1..intervals.len() - 1] {
        assert!((i.target_rate - 2000.0).abs() < 1.0, "{i:?}");
        assert!(i.latency.p50_ms > 0.0);
    }
    assert_eq!(report.intervals.len(), intervals.len());
    assert!(
        !report.self_check.saturated,
        "{}",
        report.self_check.message
    );
}
