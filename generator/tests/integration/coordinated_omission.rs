//! Coordinated omission: when the target stalls for a second mid-run, the open model's p99 (measured from each
//! request's scheduled start) shows the stall and the requests beyond the outstanding cap are counted as dropped,
//! while a closed-loop measurement of the same stall hides it.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use generator::profile::RequestSpec;
use generator::{ArrivalMode, Profile, RunOptions, TargetSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A target that answers at once, except while a stall is on: then every request waits until the stall ends.
async fn stall_server() -> (String, Arc<Mutex<Option<Instant>>>) {
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    async fn handler(State(s): State<Arc<Mutex<Option<Instant>>>>) -> &'static str {
        let until = *s.lock().unwrap();
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        "ok"
    }
    let app = Router::new()
        .route("/", get(handler))
        .with_state(stall_until.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, stall_until)
}

/// Stall the server from `after` for `length`.
fn schedule_stall(s: Arc<Mutex<Option<Instant>>>, after: Duration, length: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        *s.lock().unwrap() = Some(Instant::now() + length);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_in_p99_and_drops_are_counted() {
    let _cpu = common::alone().await;
    let (url, stall) = stall_server().await;
    schedule_stall(stall, Duration::from_millis(1500), Duration::from_secs(1));
    let profile = Profile::constant(
        500.0,
        Duration::from_secs(4),
        RequestSpec::new("GET", "/", None),
    );
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        RunOptions {
            max_in_flight: 100,
            ..RunOptions::default()
        },
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // During the stall 500 requests fall due, 100 can be outstanding: about 400 are dropped, none sent late.
    assert!(
        (300..=450).contains(&report.dropped),
        "dropped {}",
        report.dropped
    );
    assert_eq!(
        report.requests + report.dropped,
        2000,
        "every scheduled request is either sent or dropped"
    );
    // The ~100 requests caught in the stall waited 0.8-1 s from their scheduled start: more than 1 % of the requests.
    assert!(
        report.latency.p99_ms > 700.0,
        "p99 {} ms hides the stall",
        report.latency.p99_ms
    );
    assert!(
        report.latency.max_ms > 900.0,
        "max {} ms",
        report.latency.max_ms
    );
    assert!(
        report.latency.p50_ms < 50.0,
        "p50 {} ms",
        report.latency.p50_ms
    );
    // The interval series places the stall.
    let worst = report
        .intervals
        .iter()
        .max_by(|a, b| a.latency.p99_ms.total_cmp(&b.latency.p99_ms))
        .unwrap();
    assert!(
        (1.0..=3.0).contains(&worst.start_s),
        "worst interval at {}",
        worst.start_s
    );
    assert!(report.intervals.iter().any(|i| i.dropped > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_measurement_hides_the_same_stall() {
    let _cpu = common::alone().await;
    let (url, stall) = stall_server().await;
    schedule_stall(stall, Duration::from_millis(1000), Duration::from_secs(1));
    let profile = Profile::constant(
        1.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/", None),
    );
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        RunOptions {
            mode: ArrivalMode::ClosedLoop { connections: 4 },
            ..RunOptions::default()
        },
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // Four connections each wait once through the stall: 4 slow samples among thousands.
    assert!(report.requests > 2000, "{} requests", report.requests);
    assert!(
        report.latency.max_ms > 900.0,
        "max {}",
        report.latency.max_ms
    );
    assert!(
        report.latency.p99_ms < 100.0,
        "closed loop p99 {} ms",
        report.latency.p99_ms
    );
}
