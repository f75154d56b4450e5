//! The generator's `--monitor` through the real scaler's `/explain` (here, where the generator and the scaler meet, so
//! the generator itself links no gRPC): two ScaledObjects on one scaler, the watched one's figures only, its trigger
//! readings recorded as the scaling report's signals, an unknown ScaledObject named clearly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keda_proto::ScaledObjectRef;
use keda_proto::external_scaler_client::ExternalScalerClient;
use load::monitor::ReplicaSource;
use load::profile::{RequestSpec, Stage};
use load::{Profile, RunOptions, TargetSet};
use monitor::ExplainSource;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scalers_explain_drives_the_scaling_report() {
    let _alone = crate::heavy().await;
    let consumer = testkit::Spawned::start(
        testkit::bin_path("consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pod-name",
            "explain-pod",
            "--executors",
            "2",
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts");
    let consumer_url = consumer.url("http");
    let scaler = testkit::Spawned::start(
        testkit::bin_path("scaler"),
        &[
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ],
        &[],
        &["grpc", "http"],
    )
    .await
    .expect("scaler starts");
    let scaler_url = scaler.url("http");
    let grpc_url = scaler.url("grpc");
    testkit::wait_http_ok(&format!("{scaler_url}/ready"), Duration::from_secs(10))
        .await
        .unwrap();

    // Register the trigger as KEDA does: GetMetricSpec with the ScaledObject's metadata.
    let mut client = ExternalScalerClient::connect(grpc_url).await.unwrap();
    // Two ScaledObjects on the same consumer's backlog: the watched one wants backlog/2 replicas, the other
    // backlog/0.05, i.e. 40 times as many.
    for (name, target) in [("consumer", "2"), ("other", "0.05")] {
        let metadata: HashMap<String, String> = [
            ("trigger", "backlog".to_string()),
            ("targets", format!("{consumer_url}/metrics")),
            ("target", target.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let reference = ScaledObjectRef {
            name: name.into(),
            namespace: "lab".into(),
            scaler_metadata: metadata,
        };
        let spec = client
            .get_metric_spec(reference)
            .await
            .expect("trigger accepted")
            .into_inner();
        assert_eq!(spec.metric_specs.len(), 1);
    }
    let other = ExplainSource::new(&scaler_url, "lab/other");
    let other_stop = CancellationToken::new();
    let other_peak = {
        let stop = other_stop.clone();
        tokio::spawn(async move {
            let mut peak = 0u32;
            loop {
                if let Ok(s) = other.observe().await {
                    peak = peak.max(s.desired.unwrap_or(0));
                }
                tokio::select! {
                    _ = stop.cancelled() => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    };

    let source: Arc<dyn ReplicaSource> = Arc::new(ExplainSource::new(&scaler_url, "lab/consumer"));
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
    let data = load::run_load(
        profile,
        TargetSet::single(&consumer_url).unwrap(),
        opts,
        Some(source.clone()),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let report = load::Report::assemble(data);
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
    // Each poll's trigger readings are the analysis's signals: the backlog rose above its target of 2 per replica.
    let record = source
        .record()
        .expect("the /explain source records its readings");
    assert!(
        record.signals.iter().any(|r| r.value > 2.0
            && r.target == 2.0
            && r.metric_type == timeline::MetricType::AverageValue),
        "{:?}",
        record.signals
    );
    assert!(
        !s.inputs_missing.iter().any(|m| m.starts_with("signals")),
        "{:?}",
        s.inputs_missing
    );
    other_stop.cancel();
    let other_peak = other_peak.await.unwrap();
    let watched_peak = s.peak_desired_replicas.unwrap_or(0);
    assert!(
        other_peak > 10 * watched_peak,
        "the watched ScaledObject's figure ({watched_peak}) must not be the other's ({other_peak}): {:?}",
        s.timeline
    );
    let unknown = ExplainSource::new(&scaler_url, "lab/missing")
        .observe()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("lab/consumer, lab/other"),
        "an unknown ScaledObject names those served: {unknown}"
    );
    assert!(s.timeline.iter().any(|p| {
        p.snapshot
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("backlog"))
    }));
}
