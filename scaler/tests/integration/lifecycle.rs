//! The scaler's lifecycle: the binary's listening lines, readiness and clean SIGTERM exit; many concurrent streams
//! and their clean-up; idle triggers forgotten and relearned on the next call.

use std::time::Duration;

use crate::common::{Scaler, consumer, eventually, meta, sample_value, scaled_object};
use futures::StreamExt;

#[tokio::test]
async fn binary_logs_listening_serves_ready_and_exits_cleanly_on_sigterm() {
    let mut process = testkit::Spawned::start(
        env!("CARGO_BIN_EXE_scaler"),
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
    testkit::wait_http_ok(
        &format!("{}/ready", process.url("http")),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let health: serde_json::Value = reqwest::get(format!("{}/health", process.url("http")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let missing = reqwest::get(format!("{}/nope", process.url("http")))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let channel = tonic::transport::Channel::from_shared(process.url("grpc"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = keda_proto::external_scaler_client::ExternalScalerClient::new(channel);
    let spec = client
        .get_metric_spec(scaled_object(
            "x",
            meta(&[
                ("trigger", "request_rate"),
                ("targets", "consumer-headless:8080"),
            ]),
        ))
        .await
        .unwrap();
    assert_eq!(spec.into_inner().metric_specs[0].target_size_float, 5.0);

    process.signal(15);
    let status = process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits within 10 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}: {:?}",
        process.output_lines()
    );

    let bad = testkit::Spawned::start(
        env!("CARGO_BIN_EXE_scaler"),
        &[
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--prometheus-url",
            "ftp://x",
        ],
        &[],
        &["grpc"],
    )
    .await;
    let error = bad.expect_err("bad --prometheus-url refused").to_string();
    assert!(error.contains("--prometheus-url"), "{error}");
}

#[tokio::test]
async fn many_concurrent_streams_get_the_state_and_are_cleaned_up() {
    let consumer = consumer(0).await;
    let scaler = Scaler::start(&["--direct-poll-interval", "300ms"]).await;
    let client = scaler.client().await;
    let targets = format!("{}/metrics", consumer.url("http"));
    let mut streams = Vec::new();
    for i in 0..200 {
        let reference = scaled_object(
            &format!("app-{}", i % 20),
            meta(&[
                ("trigger", "backlog"),
                ("target", "1"),
                ("targets", &targets),
            ]),
        );
        streams.push(
            client
                .clone()
                .stream_is_active(reference)
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let firsts = futures::future::join_all(
        streams
            .iter_mut()
            .map(|s| tokio::time::timeout(Duration::from_secs(10), s.next())),
    )
    .await;
    for first in firsts {
        assert!(
            !first
                .expect("state within 10 s")
                .expect("open")
                .expect("ok")
                .result
        );
    }
    let open = sample_value(
        &scaler.metrics_text().await,
        "scaler_streams_open{rpc=\"StreamIsActive\"}",
    );
    assert_eq!(open, Some(200.0));
    drop(streams);
    eventually(
        "all 200 streams cleaned up",
        Duration::from_secs(5),
        || async {
            match sample_value(
                &scaler.metrics_text().await,
                "scaler_streams_open{rpc=\"StreamIsActive\"}",
            ) {
                Some(0.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    scaler.shutdown().await;
}

#[tokio::test]
async fn idle_triggers_are_forgotten_and_come_back_on_the_next_call() {
    let scaler = Scaler::start(&[
        "--direct-poll-interval",
        "100ms",
        "--trigger-idle-timeout",
        "500ms",
    ])
    .await;
    let mut client = scaler.client().await;
    let reference = scaled_object(
        "idle",
        meta(&[
            ("trigger", "backlog"),
            ("target", "1"),
            ("targets", "http://127.0.0.1:9/metrics"),
        ]),
    );
    client.get_metric_spec(reference.clone()).await.unwrap();
    assert_eq!(
        scaler.explain().await["scaled_objects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    eventually("idle trigger forgotten", Duration::from_secs(5), || async {
        let explain = scaler.explain().await;
        match (
            explain["scaled_objects"].as_array().unwrap().len(),
            explain["sources"].as_array().unwrap().len(),
        ) {
            (0, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The same request again (answered from the request memo before) registers the trigger anew.
    client.get_metric_spec(reference.clone()).await.unwrap();
    let explain = scaler.explain().await;
    assert_eq!(
        explain["scaled_objects"].as_array().unwrap().len(),
        1,
        "{explain}"
    );
    assert_eq!(explain["sources"].as_array().unwrap().len(), 1, "{explain}");
    scaler.shutdown().await;
}
