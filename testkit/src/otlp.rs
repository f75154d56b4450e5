//! One OTLP/gRPC trace sink for tests: a real `TraceService` server (opentelemetry-proto's generated tonic service) on
//! 127.0.0.1:0 that keeps every span it is sent, with the `service.name` of its resource, and lets a test wait, with a
//! bounded timeout, until the spans it expects have arrived.
//!
//! ```no_run
//! # async fn example() {
//! let sink = testkit::otlp::OtlpSink::start().await.unwrap();
//! // start the process under test with OTEL_EXPORTER_OTLP_ENDPOINT = sink.endpoint()
//! let spans = sink
//!     .wait_for(std::time::Duration::from_secs(10), |spans| spans.iter().any(|s| s.span.name == "GET /"))
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span and the `service.name` of the resource it came with.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub span: Span,
    pub service_name: Option<String>,
}

impl ReceivedSpan {
    /// A string attribute of the span.
    pub fn string_attribute(&self, key: &str) -> Option<String> {
        string_attribute(&self.span.attributes, key)
    }

    /// An integer attribute of the span.
    pub fn int_attribute(&self, key: &str) -> Option<i64> {
        int_attribute(&self.span.attributes, key)
    }

    /// The trace id as 32 lowercase hex digits (the `traceparent` spelling).
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id as hex; empty for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

/// Everything received so far; `version` counts exports so waiters wake on each.
#[derive(Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    exports: Arc<watch::Sender<u64>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| string_attribute(&resource.attributes, "service.name"));
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|span| ReceivedSpan {
                    span,
                    service_name: service_name.clone(),
                }));
            }
        }
        // Stored before the answer: once an exporter's flush returns, what it sent is visible here.
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(received);
        self.exports.send_modify(|count| *count += 1);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The spans a wait expected did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the expected spans did not arrive within {timeout:?}; received {received}: {names:?}")]
pub struct Timeout {
    pub timeout: Duration,
    pub received: usize,
    /// Names of the spans that did arrive.
    pub names: Vec<String>,
}

/// A running OTLP/gRPC trace receiver; stops when dropped.
pub struct OtlpSink {
    endpoint: String,
    collector: Collector,
    server: JoinHandle<()>,
}

impl OtlpSink {
    /// Starts the receiver on 127.0.0.1 on a free port.
    pub async fn start() -> std::io::Result<OtlpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let collector = Collector {
            spans: Arc::default(),
            exports: Arc::new(watch::channel(0).0),
        };
        let service = TraceServiceServer::new(collector.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(OtlpSink {
            endpoint,
            collector,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collector
            .spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until `done` holds for the spans received so far (checked now and after every export), at most
    /// `timeout`; returns those spans.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedSpan]) -> bool,
    ) -> Result<Vec<ReceivedSpan>, Timeout> {
        let mut exports = self.collector.exports.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            match tokio::time::timeout_at(deadline, exports.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`: it cannot close while we wait; only the deadline ends this loop.
                Ok(Err(_)) | Err(_) => {
                    let spans = self.spans();
                    if done(&spans) {
                        return Ok(spans);
                    }
                    return Err(Timeout {
                        timeout,
                        received: spans.len(),
                        names: spans.iter().map(|span| span.span.name.clone()).collect(),
                    });
                }
            }
        }
    }

    /// Waits until at least `count` spans arrived (at most `timeout`).
    pub async fn wait_for_count(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, Timeout> {
        self.wait_for(timeout, |spans| spans.len() >= count).await
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// A string attribute from a list (a span's, a resource's, a link's).
pub fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        AnyValue::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

/// An integer attribute from a list.
pub fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        AnyValue::IntValue(value) => Some(*value),
        _ => None,
    }
}

/// Lowercase hex of an id's bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::common::v1::AnyValue as Any;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(Any {
                value: Some(AnyValue::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request(service: &str, names: &[&str]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: names
                        .iter()
                        .map(|name| Span {
                            name: (*name).into(),
                            trace_id: vec![0xab; 16],
                            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                            attributes: vec![
                                string("http.route", "/x"),
                                KeyValue {
                                    key: "http.response.status_code".into(),
                                    value: Some(Any {
                                        value: Some(AnyValue::IntValue(200)),
                                    }),
                                    ..Default::default()
                                },
                            ],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn a_real_otlp_client_export_is_collected_and_awaited() {
        let sink = OtlpSink::start().await.unwrap();
        assert!(sink.endpoint().starts_with("http://127.0.0.1:"));
        let mut client = TraceServiceClient::connect(sink.endpoint().to_owned())
            .await
            .unwrap();
        let waiter = sink.wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|span| span.span.name == "second")
        });
        let exports = async {
            client.export(request("svc", &["first"])).await.unwrap();
            client.export(request("svc", &["second"])).await.unwrap();
        };
        let (spans, ()) = tokio::join!(waiter, exports);
        let spans = spans.unwrap();
        assert_eq!(spans.len(), 2);
        let first = &spans[0];
        assert_eq!(first.service_name.as_deref(), Some("svc"));
        assert_eq!(first.string_attribute("http.route").as_deref(), Some("/x"));
        assert_eq!(first.int_attribute("http.response.status_code"), Some(200));
        assert_eq!(first.trace_id(), "ab".repeat(16));
        assert_eq!(first.span_id(), "0102030405060708");
        assert_eq!(first.parent_span_id(), "");
    }

    #[tokio::test]
    async fn a_wait_that_is_never_satisfied_times_out_with_what_arrived() {
        let sink = OtlpSink::start().await.unwrap();
        let mut client = TraceServiceClient::connect(sink.endpoint().to_owned())
            .await
            .unwrap();
        client.export(request("svc", &["only"])).await.unwrap();
        let started = std::time::Instant::now();
        let error = sink
            .wait_for_count(2, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error.received, 1);
        assert_eq!(error.names, vec!["only".to_owned()]);
    }
}
