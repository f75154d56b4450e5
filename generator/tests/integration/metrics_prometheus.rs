//! The generator's /metrics, scraped by a real Prometheus: the contract's series arrive with their labels, and
//! `promtool check metrics` accepts the exposition.

use crate::common;

use std::time::Duration;

use generator::metrics::GeneratorMetrics;
use generator::profile::RequestSpec;
use generator::{Profile, RunOptions, TargetSet};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_generator_series() {
    let _cpu = common::shared().await;
    let consumer = common::start_consumer("metrics-pod", &[]).await;
    let metrics = GeneratorMetrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        let registry = metrics.registry().clone();
        tokio::spawn(async move {
            generator::metrics::serve(listener, registry, async move { stop.cancelled().await })
                .await
        })
    };
    let prometheus = testkit::Prometheus::start(&[addr], Duration::from_millis(500))
        .await
        .unwrap();

    let mut profile = Profile::constant(
        100.0,
        Duration::from_secs(3),
        RequestSpec::new("GET", "/health", None),
    );
    profile
        .requests
        .push(RequestSpec::new("GET", "/nope", None));
    let opts = RunOptions {
        metrics: Some(metrics.clone()),
        interval: Duration::from_millis(500),
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 300);

    let ok = prometheus
        .wait_for(
            "sum(generator_requests_total{endpoint=\"/health\",outcome=\"ok\"})",
            Duration::from_secs(15),
            |r| r[0]["value"][1].as_str() == Some("150"),
        )
        .await
        .unwrap();
    assert_eq!(ok.as_array().unwrap().len(), 1);
    prometheus
        .wait_for(
            "sum(generator_requests_total{endpoint=\"/nope\",outcome=\"http_error\"})",
            Duration::from_secs(10),
            |r| r[0]["value"][1].as_str() == Some("150"),
        )
        .await
        .unwrap();
    prometheus
        .wait_for(
            "sum(generator_request_duration_seconds_count{endpoint=\"/health\"})",
            Duration::from_secs(10),
            |r| r[0]["value"][1].as_str() == Some("150"),
        )
        .await
        .unwrap();
    let q = prometheus.query("generator_dropped_total").await.unwrap();
    assert_eq!(q[0]["value"][1], "0");
    let q = prometheus.query("generator_target_rate").await.unwrap();
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");

    // promtool lints the exposition.
    let text = metrics.render();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/setup.sh)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_cpu_cost_per_request_comes_from_prometheus() {
    let _cpu = common::shared().await;
    let consumer = common::start_consumer("cost-pod", &[]).await;
    let addr: std::net::SocketAddr = consumer.url.trim_start_matches("http://").parse().unwrap();
    let prometheus = testkit::Prometheus::start(&[addr], Duration::from_millis(500))
        .await
        .unwrap();
    prometheus
        .wait_for(
            "consumer_cpu_burn_seconds_total",
            Duration::from_secs(10),
            |r| r.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await
        .unwrap();
    // 60 sync CPU burns of 20 ms: 1.2 CPU-seconds of work, 20 CPU-seconds per 1000 requests.
    let profile = Profile::constant(
        20.0,
        Duration::from_secs(3),
        RequestSpec::new(
            "POST",
            "/load/cpu",
            Some(serde_json::json!({"duration_ms": 20, "complexity": 1})),
        ),
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
    assert_eq!(report.ok, 60, "{:?}", report.errors);
    // Let Prometheus scrape the final counter before asking.
    prometheus
        .wait_for(
            "consumer_cpu_burn_seconds_total",
            Duration::from_secs(10),
            |r| {
                r[0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.1)
            },
        )
        .await
        .unwrap();
    generator::app::measure_target_cpu(
        &prometheus.url,
        "sum(increase(consumer_cpu_burn_seconds_total{job=\"consumer\"}[{range}]))",
        &mut report,
    )
    .await
    .unwrap();
    let cost = report.target_cpu.clone().expect("measured");
    assert!(!cost.query.contains("{range}"), "{}", cost.query);
    assert!((0.8..=1.8).contains(&cost.cpu_seconds), "{cost:?}");
    let per_1000 = cost.cpu_seconds_per_1000_requests.unwrap();
    assert!((13.0..=30.0).contains(&per_1000), "{cost:?}");
    assert!(report.render_summary().contains("target CPU"));
    let err =
        generator::app::measure_target_cpu(&prometheus.url, "nothing_here[{range}]", &mut report)
            .await;
    assert!(err.is_err());
}
