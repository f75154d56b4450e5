//! Traces start at the generator: sampled requests carry a W3C `traceparent`, and their client spans reach a real
//! OTLP/gRPC receiver (the collector's TraceService from opentelemetry-proto) with the same trace and span ids.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use generator::profile::RequestSpec;
use generator::trace::Tracing;
use generator::{Profile, RunOptions, TargetSet};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_util::sync::CancellationToken;

/// A received span and the `service.name` of its resource.
type Received = (Span, Option<String>);

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs.resource.as_ref().and_then(|r| {
                r.attributes.iter().find(|a| a.key == "service.name").and_then(|a| {
                    a.value.as_ref().and_then(|v| match &v.value {
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                })
            });
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((s, service.clone()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_carry_traceparent_and_their_spans_reach_the_receiver() {
    let _cpu = common::shared().await;
    // OTLP receiver.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let svc = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    // Target that records the traceparent it receives.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    async fn handler(
        State(seen): State<Arc<Mutex<Vec<String>>>>,
        headers: HeaderMap,
    ) -> &'static str {
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            seen.lock().unwrap().push(tp.to_string());
        }
        "ok"
    }
    let app = Router::new()
        .route("/work", get(handler))
        .with_state(seen.clone());
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", target.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(target, app).await });

    let tracing = Arc::new(Tracing::with_endpoint(1.0, &otlp).unwrap());
    let profile = Profile::constant(
        20.0,
        Duration::from_secs(1),
        RequestSpec::new("GET", "/work", None),
    );
    let opts = RunOptions {
        tracing: Some(tracing.clone()),
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 20);
    let t = tracing.clone();
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .unwrap();

    let headers = seen.lock().unwrap().clone();
    assert_eq!(headers.len(), 20, "every request sampled at 1.0");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.spans.lock().unwrap().len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spans = receiver.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 20);
    for (span, service) in &spans {
        assert_eq!(span.name, "GET /work");
        assert_eq!(span.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(service.as_deref(), Some("generator"));
        let tp = format!("00-{}-{}-01", hex(&span.trace_id), hex(&span.span_id));
        assert!(headers.contains(&tp), "{tp} not sent; sent {headers:?}");
        let status = span
            .attributes
            .iter()
            .find(|a| a.key == "http.response.status_code")
            .expect("status attribute");
        assert!(format!("{:?}", status.value).contains("200"), "{status:?}");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_the_sample_share_still_gets_traceparent() {
    let _cpu = common::shared().await;
    let seen: Arc<Mutex<u64>> = Arc::default();
    async fn handler(State(seen): State<Arc<Mutex<u64>>>, headers: HeaderMap) -> &'static str {
        if headers.contains_key("traceparent") {
            *seen.lock().unwrap() += 1;
        }
        "ok"
    }
    let app = Router::new()
        .route("/", get(handler))
        .with_state(seen.clone());
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", target.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(target, app).await });
    let tracing = Arc::new(Tracing::propagate_only(0.2).unwrap());
    let profile = Profile::constant(
        1000.0,
        Duration::from_secs(2),
        RequestSpec::new("GET", "/", None),
    );
    let opts = RunOptions {
        tracing: Some(tracing),
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 2000);
    let n = *seen.lock().unwrap();
    assert!((300..=500).contains(&n), "{n} of 2000 sampled at 0.2");
}
