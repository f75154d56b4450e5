//! The scaler over gRPC (tonic client generated from the repo's proto) against real consumers scraped directly: every
//! RPC, push activation timing, the cache and staleness semantics when the source goes down, bad metadata, and the
//! one-poll-per-interval guarantee.

use std::time::{Duration, Instant};

use crate::common::{
    Load, Scaler, consumer, eventually, meta, metrics_request, sample_value, scaled_object,
};
use futures::StreamExt;
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn every_rpc_and_push_activation_with_the_direct_source() {
    let consumer = consumer(0).await;
    // Default poll interval (1 s): the activation bound below is the product's promise, not a tuned test value.
    let scaler = Scaler::start(&["--deactivate-after-polls", "2"]).await;
    let mut client = scaler.client().await;
    let metadata = meta(&[
        ("trigger", "request_rate"),
        ("targets", &format!("{}/metrics", consumer.url("http"))),
        ("target", "5"),
        ("window", "2s"),
    ]);
    let reference = scaled_object("web", metadata);

    let spec = client
        .get_metric_spec(reference.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    let metric = &spec.metric_specs[0];
    assert!(
        metric.metric_name.starts_with("request-rate-"),
        "{}",
        metric.metric_name
    );
    assert_eq!(metric.target_size_float, 5.0);
    assert_eq!(metric.target_size, 5);

    let mut stream = client
        .stream_is_active(reference.clone())
        .await
        .unwrap()
        .into_inner();
    // Opening state: idle (the scaler's own scrapes of /metrics are probe routes and never count).
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("initial state within 10 s")
        .expect("stream open")
        .expect("no error");
    assert!(!first.result, "idle consumer must be inactive");

    let idle = client
        .get_metrics(metrics_request(
            &reference,
            &format!("s0-{}", metric.metric_name),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(idle.metric_values[0].metric_value_float, 0.0);
    assert!(
        !client
            .is_active(reference.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );

    let load_started = Instant::now();
    let load = Load::start(
        format!("{}/load/cpu", consumer.url("http")),
        json!({"duration_ms": 5}),
        2,
    );
    let activated = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("activation pushed")
        .expect("stream open")
        .expect("no error");
    let activation = load_started.elapsed();
    assert!(activated.result);
    eprintln!("activation after {activation:?}");
    assert!(
        activation < Duration::from_millis(1500),
        "StreamIsActive took {activation:?} to report load (promise: < 1.5 s)"
    );

    let busy = client
        .get_metrics(metrics_request(&reference, &metric.metric_name))
        .await
        .unwrap()
        .into_inner();
    let value = &busy.metric_values[0];
    assert_eq!(value.metric_name, metric.metric_name);
    // Any positive rate: on a loaded 2-core machine the load tasks may have sent only a few requests by now.
    assert!(
        value.metric_value_float > 0.0,
        "busy rate {}",
        value.metric_value_float
    );
    assert_eq!(value.metric_value, value.metric_value_float.round() as i64);
    assert!(
        client
            .is_active(reference.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );

    let explain = scaler.explain().await;
    let trigger = &explain["scaled_objects"][0]["triggers"][0];
    assert_eq!(explain["scaled_objects"][0]["scaled_object"], "lab/web");
    assert_eq!(trigger["kind"], "request_rate");
    assert_eq!(trigger["trigger"], metric.metric_name);
    assert_eq!(trigger["metric_type"], "AverageValue");
    assert_eq!(trigger["current_replicas"], 1);
    let explained = trigger["value"].as_f64().unwrap();
    let replicas = trigger["replicas_for_value"].as_u64().unwrap();
    // The HPA formula with its 10 % tolerance around the current count (1 pod here).
    let expected = if (explained / 5.0 - 1.0).abs() <= 0.1 {
        1
    } else {
        (explained / 5.0).ceil() as u64
    };
    assert_eq!(replicas, expected, "{trigger}");
    assert!(trigger["age_seconds"].as_f64().unwrap() < 2.0);

    let sent = load.stop().await;
    assert!(sent > 0, "load sent {sent} requests");
    let deactivated = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("deactivation pushed after the window and hysteresis")
        .expect("stream open")
        .expect("no error");
    assert!(!deactivated.result);

    let metrics = scaler.metrics_text().await;
    assert!(
        sample_value(
            &metrics,
            "scaler_grpc_requests_total{code=\"OK\",rpc=\"GetMetrics\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample_value(&metrics, "scaler_streams_open{rpc=\"StreamIsActive\"}"),
        Some(1.0)
    );
    drop(stream);
    eventually(
        "stream gauge back to 0 after disconnect",
        Duration::from_secs(5),
        || async {
            let metrics = scaler.metrics_text().await;
            match sample_value(&metrics, "scaler_streams_open{rpc=\"StreamIsActive\"}") {
                Some(0.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    scaler.shutdown().await;
}

#[tokio::test]
async fn source_down_serves_cache_then_unavailable_then_recovers() {
    let port = testkit::free_port();
    let mut consumer_process = consumer(port).await;
    let scaler = Scaler::start(&[
        "--direct-poll-interval",
        "200ms",
        "--max-staleness",
        "1500ms",
    ])
    .await;
    let mut client = scaler.client().await;
    let reference = scaled_object(
        "backlog",
        meta(&[
            ("trigger", "backlog"),
            ("target", "3"),
            ("targets", &format!("http://127.0.0.1:{port}")),
        ]),
    );
    let name = client
        .get_metric_spec(reference.clone())
        .await
        .unwrap()
        .into_inner()
        .metric_specs[0]
        .metric_name
        .clone();
    let before = client
        .get_metrics(metrics_request(&reference, &name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.metric_values[0].metric_value_float, 0.0);

    consumer_process.signal(9);
    consumer_process
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("consumer killed");
    let killed_at = Instant::now();

    // The spec never depends on the source.
    let spec = client
        .get_metric_spec(reference.clone())
        .await
        .expect("GetMetricSpec while the source is down");
    assert_eq!(spec.into_inner().metric_specs[0].target_size_float, 3.0);
    // Within the staleness bound the cached value is served.
    let cached = client.get_metrics(metrics_request(&reference, &name)).await;
    if killed_at.elapsed() < Duration::from_millis(1000) {
        assert_eq!(
            cached
                .expect("cached value within the staleness bound")
                .into_inner()
                .metric_values[0]
                .metric_value_float,
            0.0
        );
    }
    // Then UNAVAILABLE, naming the cause; never a made-up value.
    let status = eventually(
        "GetMetrics UNAVAILABLE after the staleness bound",
        Duration::from_secs(5),
        || {
            let mut client = client.clone();
            let reference = reference.clone();
            let name = name.clone();
            async move {
                match client.get_metrics(metrics_request(&reference, &name)).await {
                    Err(status) => Ok(status),
                    Ok(ok) => Err(format!("still OK: {:?}", ok.into_inner())),
                }
            }
        },
    )
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1300),
        "UNAVAILABLE too early: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("failing") && status.message().contains(&port.to_string()),
        "{}",
        status.message()
    );
    assert_eq!(
        client
            .is_active(reference.clone())
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    let explain = scaler.explain().await;
    let trigger = &explain["scaled_objects"][0]["triggers"][0];
    assert_eq!(trigger["stale"], true);
    assert!(
        trigger["error"].as_str().unwrap().contains("scrape"),
        "{trigger}"
    );
    let metrics = scaler.metrics_text().await;
    assert!(sample_value(&metrics, "scaler_source_errors_total").unwrap() >= 1.0);

    // Recovery is automatic once the pod is back.
    let _restarted = consumer(port).await;
    eventually("GetMetrics recovers", Duration::from_secs(5), || {
        let mut client = client.clone();
        let reference = reference.clone();
        let name = name.clone();
        async move {
            client
                .get_metrics(metrics_request(&reference, &name))
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        }
    })
    .await;
    scaler.shutdown().await;
}

#[tokio::test]
async fn bad_metadata_is_invalid_argument_on_every_rpc() {
    let scaler = Scaler::start(&[]).await;
    let mut client = scaler.client().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("targets", "svc")], "trigger"),
        (&[("trigger", "cpu"), ("targets", "svc")], "trigger"),
        (
            &[
                ("trigger", "request_rate"),
                ("targets", "svc"),
                ("tagret", "5"),
            ],
            "tagret",
        ),
        (
            &[
                ("trigger", "request_rate"),
                ("targets", "svc"),
                ("target", "-1"),
            ],
            "target",
        ),
        (
            &[
                ("trigger", "latency"),
                ("targets", "svc"),
                ("quantile", "95"),
            ],
            "quantile",
        ),
        (
            &[
                ("trigger", "request_rate"),
                ("targets", "svc"),
                ("window", "soon"),
            ],
            "window",
        ),
        (&[("trigger", "request_rate")], "serverAddress"),
        (&[("trigger", "backlog"), ("targets", "svc")], "target"),
        (
            &[
                ("trigger", "query"),
                ("target", "1"),
                ("serverAddress", "http://p:9090"),
            ],
            "query",
        ),
        (
            &[("trigger", "request_rate"), ("serverAddress", "not a url")],
            "serverAddress",
        ),
    ];
    for (pairs, key) in cases {
        let reference = scaled_object("bad", meta(pairs));
        let checks = [
            (
                "GetMetricSpec",
                client.get_metric_spec(reference.clone()).await.map(|_| ()),
            ),
            (
                "IsActive",
                client.is_active(reference.clone()).await.map(|_| ()),
            ),
            (
                "GetMetrics",
                client
                    .get_metrics(metrics_request(&reference, "x"))
                    .await
                    .map(|_| ()),
            ),
            (
                "StreamIsActive",
                client.stream_is_active(reference.clone()).await.map(|_| ()),
            ),
            (
                "StreamMetricSpec",
                client
                    .stream_metric_spec(reference.clone())
                    .await
                    .map(|_| ()),
            ),
        ];
        for (rpc, result) in checks {
            let status = result.expect_err(&format!("{rpc} accepted {pairs:?}"));
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{rpc} {pairs:?}: {status:?}"
            );
            assert!(
                status.message().contains(&format!("`{key}`")),
                "{rpc} {pairs:?}: message does not name `{key}`: {}",
                status.message()
            );
        }
    }
    let unknown = client
        .get_metric_spec(scaled_object(
            "bad",
            meta(&[
                ("trigger", "latency"),
                ("targets", "svc"),
                ("qantile", "0.9"),
            ]),
        ))
        .await
        .unwrap_err();
    assert!(
        unknown.message().contains("allowed keys") && unknown.message().contains("quantile"),
        "{}",
        unknown.message()
    );
    let missing_ref = client
        .get_metrics(keda_proto::GetMetricsRequest {
            scaled_object_ref: None,
            metric_name: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing_ref.code(), Code::InvalidArgument);
    let metrics = scaler.metrics_text().await;
    assert!(
        sample_value(
            &metrics,
            "scaler_grpc_requests_total{code=\"INVALID_ARGUMENT\",rpc=\"GetMetricSpec\"}"
        )
        .unwrap()
            >= 10.0
    );
    scaler.shutdown().await;
}

#[tokio::test]
async fn stream_metric_spec_pushes_target_changes_and_health_is_serving() {
    let scaler = Scaler::start(&[]).await;
    let mut client = scaler.client().await;
    let with_target = |target: &str| {
        scaled_object(
            "web",
            meta(&[
                ("trigger", "request_rate"),
                ("targets", "http://127.0.0.1:9/metrics"),
                ("target", target),
            ]),
        )
    };
    let mut stream = client
        .stream_metric_spec(with_target("5"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.metric_specs[0].target_size_float, 5.0);
    // KEDA sends the ScaledObject's new metadata on its next call; open streams follow.
    let updated = client
        .get_metric_spec(with_target("12.5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.metric_specs[0].metric_name, first.metric_specs[0].metric_name,
        "name is target-independent"
    );
    let pushed = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.metric_specs[0].target_size_float, 12.5);
    assert_eq!(pushed.metric_specs[0].target_size, 13);

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", scaler.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "externalscaler.ExternalScaler"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    // Streams end at shutdown instead of holding the server open.
    let ended = tokio::spawn(async move { while stream.next().await.is_some() {} });
    scaler.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn one_poll_per_source_per_interval_however_many_callers() {
    let consumer = consumer(0).await;
    let scaler = Scaler::start(&["--direct-poll-interval", "500ms"]).await;
    let client = scaler.client().await;
    let targets = format!("{}/metrics", consumer.url("http"));
    // 20 ScaledObjects with two triggers each on the same pods, 40 callers hammering GetMetrics for 3 s.
    let mut references = Vec::new();
    for i in 0..20 {
        for kind in [("request_rate", "5"), ("backlog", "2")] {
            let reference = scaled_object(
                &format!("app-{i}"),
                meta(&[
                    ("trigger", kind.0),
                    ("target", kind.1),
                    ("targets", &targets),
                ]),
            );
            let name = client
                .clone()
                .get_metric_spec(reference.clone())
                .await
                .unwrap()
                .into_inner()
                .metric_specs[0]
                .metric_name
                .clone();
            references.push((reference, name));
        }
    }
    let polls_before =
        sample_value(&scaler.metrics_text().await, "scaler_source_polls_total").unwrap_or(0.0);
    let started = Instant::now();
    let callers: Vec<_> = references
        .iter()
        .cloned()
        .map(|(reference, name)| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut answered = 0u32;
                while started.elapsed() < Duration::from_secs(3) {
                    client
                        .get_metrics(metrics_request(&reference, &name))
                        .await
                        .expect("GetMetrics");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for caller in callers {
        answered += caller.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let polls = sample_value(&scaler.metrics_text().await, "scaler_source_polls_total").unwrap()
        - polls_before;
    assert!(answered > 400, "only {answered} GetMetrics answered");
    let expected = elapsed / 0.5;
    assert!(
        polls <= expected + 2.0 && polls >= expected - 2.0,
        "{polls} polls in {elapsed:.1}s at 500ms (expected ~{expected:.0}) for {answered} calls"
    );
    let explain = scaler.explain().await;
    assert_eq!(explain["sources"].as_array().unwrap().len(), 1, "{explain}");
    assert_eq!(explain["scaled_objects"].as_array().unwrap().len(), 20);
    scaler.shutdown().await;
}
