//! `--monitor` without a Kubernetes API, through the real scaler's `GET /explain`: the scaler (in-process, as KEDA
//! would drive it over gRPC) reads a real consumer directly; when the generator's load builds a backlog, /explain's
//! HPA arithmetic asks for more replicas and the scaling report shows when.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use generator::monitor::{ExplainSource, ReplicaSource};
use generator::profile::{RequestSpec, Stage};
use generator::{Profile, RunOptions, TargetSet, run_load};
use keda_proto::ScaledObjectRef;
use keda_proto::external_scaler_client::ExternalScalerClient;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scalers_explain_drives_the_scaling_report() {
    let consumer = common::start_consumer("explain-pod", &["--executors", "2"]).await;
    let config =
        <scaler::Config as clap::Parser>::try_parse_from(["scaler", "--host", "127.0.0.1"])
            .unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(scaler::serve(grpc, http, config, async move {
            stop.cancelled().await
        }));
    }
    let scaler_url = format!("http://{http_addr}");
    testkit::wait_http_ok(&format!("{scaler_url}/ready"), Duration::from_secs(10))
        .await
        .unwrap();

    // Register the trigger as KEDA does: GetMetricSpec with the ScaledObject's metadata.
    let mut client = ExternalScalerClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let metadata: HashMap<String, String> = [
        ("trigger", "backlog".to_string()),
        ("targets", format!("{}/metrics", consumer.url)),
        ("target", "2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let reference = ScaledObjectRef {
        name: "consumer".into(),
        namespace: "lab".into(),
        scaler_metadata: metadata,
    };
    let spec = client
        .get_metric_spec(reference)
        .await
        .expect("trigger accepted")
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);

    let source: Arc<dyn ReplicaSource> = Arc::new(ExplainSource::new(&scaler_url));
    let idle = source.observe().await.unwrap();
    assert_eq!(idle.source, "explain");

    // 2 executors x 200 ms = 10 jobs/s of capacity; 40 req/s builds a backlog, then the load stops.
    let mut profile = Profile::constant(
        40.0,
        Duration::from_secs(4),
        RequestSpec::new(
            "POST",
            "/load/io",
            Some(serde_json::json!({"delay_ms": 200, "mode": "async"})),
        ),
    );
    profile.stages.push(Stage {
        name: Some("idle".into()),
        duration: Duration::from_secs(1),
        rate: 0.0,
        ramp: false,
    });
    let opts = RunOptions {
        monitor_interval: Duration::from_millis(250),
        ..RunOptions::default()
    };
    let report = run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        opts,
        Some(source),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    let s = report.scaling.expect("scaling report");
    assert!(s.observations >= 10, "{s:?}");
    assert!(
        s.peak_desired_replicas.unwrap_or(0) >= 2,
        "backlog should ask for more replicas: {:?}",
        s.timeline
    );
    let t = s
        .time_to_scale_s
        .unwrap_or_else(|| panic!("no scale-up decision seen: {:?}", s.timeline));
    assert!(t > 0.0 && t < 4.5, "time to scale {t}");
    assert!(s.timeline.iter().any(|p| {
        p.snapshot
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("backlog"))
    }));
    stop.cancel();
}
