//! RPC spans reach a real OTLP/gRPC receiver (testkit's sink: opentelemetry-proto's TraceService server) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and are flushed on SIGTERM.

use std::time::Duration;

use crate::common::{meta, scaled_object};
use testkit::otlp::OtlpSink;

#[tokio::test]
async fn rpc_spans_are_exported_over_otlp() {
    let sink = OtlpSink::start().await.expect("OTLP sink starts");
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
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())],
        &["grpc"],
    )
    .await
    .expect("scaler starts");
    let channel = tonic::transport::Channel::from_shared(process.url("grpc"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = keda_proto::external_scaler_client::ExternalScalerClient::new(channel);
    client
        .get_metric_spec(scaled_object(
            "traced",
            meta(&[("trigger", "request_rate"), ("targets", "svc")]),
        ))
        .await
        .unwrap();
    process.signal(15);
    let status = process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits on SIGTERM");
    assert!(status.success());

    // The spans were flushed before the exit; wait_for still bounds the export's arrival.
    let spans = sink
        .wait_for(Duration::from_secs(5), |spans| {
            spans.iter().any(|s| {
                s.span.name == "get_metric_spec"
                    && s.service_name
                        .as_deref()
                        .is_some_and(|n| n.contains("scaler"))
            })
        })
        .await
        .unwrap_or_else(|timeout| panic!("{timeout:?}"));
    // Only the scaler's own spans: no exporter/h2/hyper feedback.
    assert!(
        spans
            .iter()
            .all(|s| !s.span.name.contains("h2") && !s.span.name.contains("hyper")),
        "{:?}",
        spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
    );
}
