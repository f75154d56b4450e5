//! Trace propagation from the generator: a W3C `traceparent` header on a sampled share of requests and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, a client span per sampled request exported over OTLP/gRPC, so a trace in
//! Tempo starts at the generator.

use std::time::SystemTime;

use http::HeaderValue;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tokio::time::Instant;

use crate::client::{Executed, PreparedRequest};
use crate::model::Outcome;
use crate::targets::Target;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("invalid trace sample {0}: must be between 0 and 1")]
    Sample(f64),
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Sampling and (optionally) exporting client spans.
pub struct Tracing {
    sample: f64,
    exporter: Option<(SdkTracerProvider, SdkTracer)>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("sample", &self.sample)
            .field("exporting", &self.exporter.is_some())
            .finish()
    }
}

/// A sampled request's trace context (and span, when exporting).
pub struct ClientSpan {
    header: HeaderValue,
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl ClientSpan {
    /// The `traceparent` header value to send.
    pub fn traceparent(&self) -> &HeaderValue {
        &self.header
    }
}

fn traceparent(trace_id: u128, span_id: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("00-{trace_id:032x}-{span_id:016x}-01"))
        .expect("hex is a valid header")
}

impl Tracing {
    /// Propagate `traceparent` on a `sample` share of requests without exporting spans.
    pub fn propagate_only(sample: f64) -> Result<Tracing, TraceError> {
        if !(0.0..=1.0).contains(&sample) || sample.is_nan() {
            return Err(TraceError::Sample(sample));
        }
        Ok(Tracing {
            sample,
            exporter: None,
        })
    }

    /// Like [`Tracing::propagate_only`], plus an OTLP/gRPC exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the
    /// standard variables apply; service name from `OTEL_SERVICE_NAME`, default `generator`). Must run inside tokio.
    pub fn from_env(sample: f64) -> Result<Tracing, TraceError> {
        let mut t = Tracing::propagate_only(sample)?;
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
        if !endpoint.trim().is_empty() {
            t.exporter = Some(build_exporter(Some(endpoint.trim()))?);
        }
        Ok(t)
    }

    /// Export to an explicit OTLP/gRPC endpoint (tests, or a flag).
    pub fn with_endpoint(sample: f64, endpoint: &str) -> Result<Tracing, TraceError> {
        let mut t = Tracing::propagate_only(sample)?;
        t.exporter = Some(build_exporter(Some(endpoint))?);
        Ok(t)
    }

    pub fn is_exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// Decide whether to trace this request; if so, start its client span (at the scheduled time).
    pub fn start(
        &self,
        name: &str,
        req: &PreparedRequest,
        target: &Target,
        scheduled: Instant,
    ) -> Option<ClientSpan> {
        if self.sample <= 0.0 || (self.sample < 1.0 && rand::random::<f64>() >= self.sample) {
            return None;
        }
        match &self.exporter {
            None => Some(ClientSpan {
                header: traceparent(rand::random::<u128>().max(1), rand::random::<u64>().max(1)),
                span: None,
            }),
            Some((_, tracer)) => {
                let start = SystemTime::now()
                    .checked_sub(scheduled.elapsed())
                    .unwrap_or_else(SystemTime::now);
                let span = tracer
                    .span_builder(format!("{} {}", req.method, req.path))
                    .with_kind(SpanKind::Client)
                    .with_start_time(start)
                    .with_attributes(vec![
                        KeyValue::new("http.request.method", req.method.to_string()),
                        KeyValue::new("url.full", format!("{}{}", target.url, req.path)),
                        KeyValue::new("server.address", target.authority.clone()),
                        KeyValue::new("generator.endpoint", name.to_string()),
                    ])
                    .start(tracer);
                let cx = span.span_context().clone();
                let trace_id = u128::from_be_bytes(cx.trace_id().to_bytes());
                let span_id = u64::from_be_bytes(cx.span_id().to_bytes());
                Some(ClientSpan {
                    header: traceparent(trace_id, span_id),
                    span: Some(span),
                })
            }
        }
    }

    /// End a span with the request's outcome.
    pub fn finish(&self, span: ClientSpan, executed: &Executed) {
        if let Some(mut s) = span.span {
            if let Some(code) = executed.status {
                s.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
            }
            if executed.outcome != Outcome::Ok {
                s.set_attribute(KeyValue::new("error.type", executed.outcome.label()));
                s.set_status(Status::error(executed.outcome.label()));
            }
            s.end();
        }
    }

    /// Flush and stop the exporter.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.exporter {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

fn build_exporter(endpoint: Option<&str>) -> Result<(SdkTracerProvider, SdkTracer), TraceError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(e) = endpoint {
        builder = builder.with_endpoint(e.to_string());
    }
    let exporter = builder
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "generator".to_string());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("autoscaling-lab-generator");
    Ok((provider, tracer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_bounds() {
        assert!(Tracing::propagate_only(1.5).is_err());
        assert!(Tracing::propagate_only(-0.1).is_err());
        assert!(Tracing::propagate_only(0.01).is_ok());
    }

    #[test]
    fn traceparent_format() {
        let h = traceparent(0xabc, 0x12);
        assert_eq!(
            h.to_str().unwrap(),
            "00-00000000000000000000000000000abc-0000000000000012-01"
        );
    }

    #[tokio::test]
    async fn propagation_without_exporter() {
        let t = Tracing::propagate_only(1.0).unwrap();
        let req = PreparedRequest::new(http::Method::GET, "/x", None, vec![]).unwrap();
        let target = Target::parse("http://127.0.0.1:1").unwrap();
        let s = t.start("x", &req, &target, Instant::now()).unwrap();
        let v = s.traceparent().to_str().unwrap().to_string();
        assert_eq!(v.len(), 55);
        assert!(v.starts_with("00-") && v.ends_with("-01"));
    }
}
