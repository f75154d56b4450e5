//! Self-check: when the generator itself cannot keep its schedule (here its only runtime thread is hogged, as a
//! CPU-starved pod would be), the intervals and the report say the tool was the bottleneck and the run gets exit
//! code 4; a healthy run does not.

use crate::common;

use std::time::Duration;

use generator::profile::RequestSpec;
use generator::{Profile, RunOptions, TargetSet, exit};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "current_thread")]
async fn a_starved_generator_reports_itself_saturated() {
    let _cpu = common::alone().await;
    let consumer = common::start_consumer("self-pod", &[]).await;
    // Hog the single runtime thread for 150 ms out of every 200 ms.
    let hog = tokio::spawn(async {
        loop {
            std::thread::sleep(Duration::from_millis(150));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let profile = Profile::constant(
        200.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/health", None),
    );
    let opts = RunOptions {
        interval: Duration::from_millis(500),
        ..RunOptions::default()
    };
    let mut report = common::run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    hog.abort();
    assert!(
        report.self_check.schedule_lag.p99_ms > 50.0,
        "{:?}",
        report.self_check
    );
    assert!(report.self_check.saturated, "{:?}", report.self_check);
    assert!(
        report
            .self_check
            .message
            .contains("generator itself was the bottleneck")
    );
    assert!(
        report
            .intervals
            .iter()
            .filter(|i| i.self_check.saturated)
            .count()
            >= 2
    );
    let line = report
        .intervals
        .iter()
        .find(|i| i.self_check.saturated)
        .unwrap()
        .progress_line();
    assert!(line.contains("GENERATOR SATURATED"), "{line}");
    generator::app::judge(&mut report, &[]);
    assert_eq!(report.exit_code, exit::GENERATOR_SATURATED);
    assert!(
        report.verdict.starts_with("GENERATOR SATURATED"),
        "{}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_is_not_saturated() {
    let _cpu = common::alone().await;
    let consumer = common::start_consumer("self-pod", &[]).await;
    let profile = Profile::constant(
        200.0,
        Duration::from_secs(2),
        RequestSpec::new("GET", "/health", None),
    );
    let mut report = common::run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        RunOptions::default(),
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(!report.self_check.saturated, "{:?}", report.self_check);
    assert!(report.self_check.schedule_lag.p99_ms < 50.0);
    assert!(
        report
            .self_check
            .generator_cpu_seconds_per_1000_requests
            .is_some()
    );
    generator::app::judge(&mut report, &[]);
    assert_eq!(report.exit_code, exit::OK, "{}", report.verdict);
}
