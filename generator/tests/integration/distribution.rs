//! Spreading load: N generators splitting one profile send its exact total; a dynamic target set picks up a replica
//! added mid-run; connection recycling makes a Service-style (per-connection) balancer reach a new backend; `x-served-by`
//! counts show the spread; `--cleanup` stops sustained work and waits for memory to be released.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use generator::client::{RecyclePolicy, SimpleClient};
use generator::profile::RequestSpec;
use generator::{Profile, RunOptions, Split, TargetSet};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_generators_together_hit_the_total_rate() {
    let _cpu = common::shared().await;
    let consumer = common::start_consumer("split-pod", &[]).await;
    let profile = Profile::constant(
        900.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/health", None),
    );
    let runs = (0..3).map(|index| {
        let profile = profile.clone();
        let targets = TargetSet::single(&consumer.url).unwrap();
        tokio::spawn(async move {
            let opts = RunOptions {
                split: Split { index, count: 3 },
                ..RunOptions::default()
            };
            common::run_load(profile, targets, opts, None, None, CancellationToken::new())
                .await
                .unwrap()
        })
    });
    let mut total = 0;
    for r in futures::future::join_all(runs).await {
        let r = r.unwrap();
        assert_eq!(r.expected_requests, 900.0);
        assert_eq!(r.errors.total, 0);
        assert_eq!(r.split_count, 3);
        assert!(
            (r.achieved_rate - 300.0).abs() < 300.0 * 0.05,
            "pod {} achieved {}",
            r.split_index,
            r.achieved_rate
        );
        // Each interval's target rate is this pod's share.
        assert!(
            (r.intervals[1].target_rate - 300.0).abs() < 1.0,
            "{}",
            r.intervals[1].target_rate
        );
        total += r.requests;
    }
    assert_eq!(
        total, 2700,
        "the three shares add up to the profile's total"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_mid_run_gets_its_share_and_a_removed_one_none() {
    let _cpu = common::shared().await;
    let a = common::start_consumer("pod-a", &[]).await;
    let b = common::start_consumer("pod-b", &[]).await;
    let targets = TargetSet::single(&a.url).unwrap();
    let handle = targets.clone();
    let b_url = b.url.clone();
    let a_url = a.url.clone();
    // The changes follow the load's own clock: b joins once the first interval is reported, a leaves once the second
    // is, so interval 0 is a's alone whatever the machine's load delays (a timer started before the run could fire
    // before the engine's first interval ended).
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut seen = 0;
        while progress_rx.recv().await.is_some() {
            seen += 1;
            match seen {
                1 => handle.add(&b_url).unwrap(),
                2 => assert!(handle.remove(&a_url)),
                _ => {}
            }
        }
    });
    let profile = Profile::constant(
        200.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/health", None),
    );
    let report = common::run_load(
        profile,
        targets,
        RunOptions::default(),
        None,
        Some(progress_tx),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.errors.total, 0);
    let a_count = report.served_by["pod-a"];
    let b_count = report.served_by["pod-b"];
    // a alone for 1 s (200), a and b alternating for 1 s (100 each), b alone for 1 s (200); a change lands when the
    // test hears of the interval's end, a little into the next one.
    assert!((200..=400).contains(&a_count), "pod-a {a_count}");
    assert!((200..=400).contains(&b_count), "pod-b {b_count}");
    assert!(!report.intervals[0].served_by.contains_key("pod-b"));
    // The chart shows the spread: one replica answering, then two, then one.
    assert!(report.render_timeline(60).contains("answering"));
    assert!(report.render_svg().contains("answering"));
    // A request in flight when a was removed may still finish in the last interval.
    let last = report.intervals.last().unwrap();
    assert!(
        last.served_by.get("pod-a").copied().unwrap_or(0) <= 10,
        "{last:?}"
    );
    assert!(last.served_by["pod-b"] >= 150, "{last:?}");
    assert_eq!(last.stage.as_deref(), Some("constant"));
    assert!((last.target_rate - 200.0).abs() < 5.0, "{last:?}");
}

/// A stand-in for a Kubernetes Service: balances per *connection* over its current backends, as kube-proxy does.
async fn per_connection_balancer(backends: Arc<Mutex<Vec<SocketAddr>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let list = backends.lock().unwrap().clone();
            let backend = list[next.fetch_add(1, Ordering::Relaxed) % list.len()];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    url
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_connections_reach_a_backend_that_joins_a_service_mid_run() {
    let _cpu = common::shared().await;
    let a = common::start_consumer("svc-a", &[]).await;
    let b = common::start_consumer("svc-b", &[]).await;
    let backends = Arc::new(Mutex::new(vec![addr_of(&a.url)]));
    let service = per_connection_balancer(backends.clone()).await;
    let b_addr = addr_of(&b.url);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        backends.lock().unwrap().push(b_addr);
    });
    let profile = Profile::constant(
        200.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/health", None),
    );
    let opts = RunOptions {
        recycle: RecyclePolicy {
            max_age: Some(Duration::from_millis(200)),
            max_requests: Some(50),
        },
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&service).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    let b_count = report.served_by.get("svc-b").copied().unwrap_or(0);
    // After b joins (2 s of 3), fresh connections alternate between a and b: b gets about 200 of 600.
    assert!(
        b_count >= 120,
        "svc-b served {b_count}: {:?}",
        report.served_by
    );
    let after_join: u64 = report
        .intervals
        .iter()
        .filter(|i| i.start_s >= 1.5)
        .map(|i| i.served_by.get("svc-b").copied().unwrap_or(0))
        .sum();
    assert!(after_join > 0, "{:?}", report.intervals);
}

async fn consumer_gauge(url: &str, name: &str) -> f64 {
    let (_, body) = SimpleClient::new(Duration::from_secs(15))
        .get(&format!("{url}/metrics"))
        .await
        .unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} not in the consumer's metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_stops_sustained_work_and_waits_for_memory_and_is_idempotent() {
    let _cpu = common::shared().await;
    let c = common::start_consumer("clean-pod", &["--memory-budget", "256MiB"]).await;
    let client = SimpleClient::new(Duration::from_secs(5));
    let (status, body) = client
        .request(
            http::Method::POST,
            &format!("{}/load/cpu/sustained", c.url),
            Some(&serde_json::json!({"workers": 1, "duration_seconds": 60, "complexity": 1})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let (status, body) = client
        .request(
            http::Method::POST,
            &format!("{}/load/memory", c.url),
            Some(&serde_json::json!({"size_mb": 16, "duration_ms": 1500, "mode": "async"})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    // Wait until both are visibly running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while consumer_gauge(&c.url, "consumer_memory_held_bytes").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "memory job never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        consumer_gauge(&c.url, "consumer_sustained_workers").await,
        1.0
    );

    let targets = TargetSet::single(&c.url).unwrap();
    let started = std::time::Instant::now();
    let summary = generator::app::cleanup(&targets, &[], Duration::from_secs(20)).await;
    assert!(summary.released, "{}", summary.message);
    assert_eq!(summary.stop_calls, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "returned before the memory job ended"
    );
    assert_eq!(
        consumer_gauge(&c.url, "consumer_sustained_workers").await,
        0.0
    );
    assert_eq!(
        consumer_gauge(&c.url, "consumer_memory_held_bytes").await,
        0.0
    );
    let again = generator::app::cleanup(&targets, &[], Duration::from_secs(5)).await;
    assert!(again.released, "{}", again.message);
}
