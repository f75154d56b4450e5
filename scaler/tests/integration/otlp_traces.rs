//! RPC spans reach a real OTLP/gRPC receiver (opentelemetry-proto's TraceService server) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and are flushed on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{meta, scaled_object};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in &request.get_ref().resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    spans.push((service.clone(), span.name.clone()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test]
async fn rpc_spans_are_exported_over_otlp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

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
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
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

    let spans = receiver.spans.lock().unwrap().clone();
    server.abort();
    assert!(
        spans
            .iter()
            .any(|(service, name)| name == "get_metric_spec" && service.contains("scaler")),
        "spans received: {spans:?}"
    );
    // Only the scaler's own spans: no exporter/h2/hyper feedback.
    assert!(
        spans
            .iter()
            .all(|(_, name)| !name.contains("h2") && !name.contains("hyper")),
        "{spans:?}"
    );
}
