//! Shared helpers of the generator's integration tests: a real consumer served in-process on 127.0.0.1:0, and a run
//! that ends in its report.
#![allow(dead_code)]

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A consumer running in this test's runtime. Dropping it asks it to shut down.
pub struct Consumer {
    pub url: String,
    _stop: oneshot::Sender<()>,
}

/// Start the real consumer (the `consumer` crate's `serve`) on an ephemeral port, named `pod` in `x-served-by`, and wait
/// until `/ready` answers.
pub async fn start_consumer(pod: &str, extra: &[&str]) -> Consumer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut args = vec![
        "consumer",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--pod-name",
        pod,
        "--shutdown-grace",
        "1s",
    ];
    args.extend_from_slice(extra);
    let config = consumer::Config::from_args(args).expect("consumer config");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = consumer::serve(listener, config, async move {
            let _ = rx.await;
        })
        .await;
    });
    let url = format!("http://{addr}");
    testkit::wait_http_ok(&format!("{url}/ready"), Duration::from_secs(10))
        .await
        .expect("consumer ready");
    Consumer { url, _stop: tx }
}

/// Run the load and assemble the report from the run's data, as `generator run` does.
pub async fn run_load(
    profile: generator::Profile,
    targets: generator::TargetSet,
    opts: generator::RunOptions,
    monitor: Option<std::sync::Arc<dyn generator::ReplicaSource>>,
    progress: Option<tokio::sync::mpsc::Sender<generator::IntervalStats>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<generator::Report, generator::EngineError> {
    generator::run_load(profile, targets, opts, monitor, progress, shutdown)
        .await
        .map(generator::Report::assemble)
}

/// Tests that measure the generator's own timing (rates, stalls, saturation) run alone; every other async test
/// shares. Before the tests were one binary each such file ran in a process of its own; in one binary they would
/// otherwise compete for the machine's cores with the rest and measure the competition.
static CPU: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that may run beside others (taken once, first thing, so no test waits while holding it).
pub async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    CPU.read().await
}

/// Held by a timing-sensitive test: no other async test runs meanwhile.
pub async fn alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    CPU.write().await
}
