//! The observing middleware around the whole router: for every request, matched or not, the request metrics
//! (`http_requests_total`, `http_request_duration_seconds`, `http_requests_in_flight`), the server span (HTTP
//! semantic conventions, continuing a caller's `traceparent`), the `/load/*` in-flight count the drain waits for, and
//! the `x-served-by` header.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::route_templates::RouteTemplates;
use crate::state::AppState;
use crate::telemetry;

/// Metrics, the server span and `x-served-by` for every request, around the whole router.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
    templates: Arc<RouteTemplates>,
}

impl<S> Observe<S> {
    /// Wraps `inner`; `templates` names the `route` label of each request.
    pub fn new(inner: S, state: AppState, templates: RouteTemplates) -> Observe<S> {
        Observe {
            inner,
            state,
            templates: Arc::new(templates),
        }
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge however the request ends (even if the client goes away mid-request).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let state = self.state.clone();
        let method = method_label(request.method());
        let route = self.templates.template(request.uri().path());
        state.metrics.http_requests_in_flight.inc();
        let in_flight = InFlight(state.metrics.http_requests_in_flight.clone());
        let work = route.starts_with("/load/").then(|| state.work_request());
        let span = if telemetry::exporting() {
            server_span(&request, method, route)
        } else {
            tracing::Span::none()
        };
        let future = self.inner.call(request).instrument(span.clone());

        Box::pin(async move {
            let Ok(mut response) = future.await;
            let _guards = (in_flight, work);
            let status = response.status();
            if !span.is_none() {
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
            }
            state
                .metrics
                .http_requests_total
                .with_label_values(&[method, route, status.as_str()])
                .inc();
            state
                .metrics
                .http_request_duration_seconds
                .with_label_values(&[method, route])
                .observe(started.elapsed().as_secs_f64());
            response
                .headers_mut()
                .insert(contract::headers::SERVED_BY, state.served_by.clone());
            Ok(response)
        })
    }
}

/// The server span of a request (HTTP semantic conventions), continuing the caller's trace when a `traceparent`
/// came with it.
fn server_span(request: &Request, method: &str, route: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let _ = span.set_parent(telemetry::remote_parent(request.headers()));
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}
