//! The HTTP layer: the router, the observing middleware (metrics, server span, `x-served-by`), the bearer-token
//! guard, and the handlers, which validate and hand work to the executor.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::trace::TraceContextExt;
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::api::*;
use crate::error::ApiError;
use crate::executor::Executor;
use crate::jobs::JobState;
use crate::load::memory::{self, Reservation};
use crate::load::{self as work, cpu};
use crate::state::AppState;
use crate::telemetry;
use crate::validate::{Fields, JsonObject, Mode};

/// Header naming the replica that answered.
pub const SERVED_BY: &str = "x-served-by";

/// The whole application: the routes, observed (metrics, server span, `x-served-by`) as one service.
pub fn app(state: AppState) -> Observe<Router> {
    Observe {
        inner: router(state.clone()),
        state,
    }
}

/// The routes alone. Keep [`route_template`] in step with them (a test checks it against the OpenAPI paths).
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/load/cpu", post(load_cpu))
        .route("/load/memory", post(load_memory))
        .route("/load/io", post(load_io))
        .route("/load/cpu/sustained", post(sustained_start))
        .route("/load/cpu/sustained/status", get(sustained_status))
        .route("/load/cpu/sustained/stop", post(sustained_stop))
        .route("/jobs/{id}", get(job_get).delete(job_cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .merge(crate::openapi::docs_router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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

/// The `route` label and span attribute: the route template a path matches, `unmatched` when none does. Computed
/// from the path rather than read from axum's `MatchedPath`, so that observing wraps the router once instead of
/// every route (a per-route layer costs an extra boxed service clone on each request; see `bench/consumer`).
pub fn route_template(path: &str) -> &'static str {
    const EXACT: &[&str] = &[
        "/",
        "/health",
        "/ready",
        "/metrics",
        "/load/cpu",
        "/load/memory",
        "/load/io",
        "/load/cpu/sustained",
        "/load/cpu/sustained/status",
        "/load/cpu/sustained/stop",
        "/apispec.json",
        "/apidocs",
        "/apidocs/",
    ];
    if let Some(template) = EXACT.iter().find(|template| **template == path) {
        return template;
    }
    if let Some(id) = path.strip_prefix("/jobs/") {
        if !id.is_empty() && !id.contains('/') {
            return "/jobs/{id}";
        }
    } else if path
        .strip_prefix("/apidocs/")
        .is_some_and(|rest| !rest.is_empty())
    {
        return "/apidocs/{*rest}";
    }
    "unmatched"
}

/// Metrics, the server span and `x-served-by` for every request, matched or not, around the whole router.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
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
        let route = route_template(request.uri().path());
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
                .insert(SERVED_BY, state.served_by.clone());
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

/// With `--load-token`, `/load/*` and `/jobs/*` need `Authorization: Bearer <token>`.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = state.config.load_token.as_deref() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let valid =
            given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()));
        if !valid {
            let message = if given.is_some() {
                "the bearer token is not valid"
            } else {
                "this endpoint needs Authorization: Bearer <token>"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Service identity, limits in force and current load.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, body = ServiceInfo)))]
pub async fn root(State(state): State<AppState>) -> Json<ServiceInfo> {
    let config = &state.config;
    Json(ServiceInfo {
        name: "consumer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pod: state.pod_name.clone(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        started_at: humantime::format_rfc3339_millis(state.started_at).to_string(),
        draining: state.is_draining(),
        auth_required: config.load_token.is_some(),
        limits: Limits {
            memory_budget_bytes: state.memory.budget(),
            executors: config.executors,
            queue_size: config.queue_size,
            max_sustained_workers: config.max_sustained_workers,
            slot_wait_timeout_seconds: config.slot_wait_timeout.as_secs_f64(),
            shutdown_grace_seconds: config.shutdown_grace.as_secs_f64(),
            job_retention_seconds: config.job_retention.as_secs_f64(),
        },
        load: LoadNow {
            jobs_queued: state.executor.waiting(),
            jobs_running: state.executor.running(),
            memory_reserved_bytes: state.memory.reserved(),
            sustained_workers: state.sustained.active_workers(),
        },
    })
}

/// Liveness: cheap, 200 while the process runs.
#[utoipa::path(get, path = "/health", tag = "probes", responses((status = 200, body = Status)))]
pub async fn health() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
}

/// Readiness: 200 normally, 503 from the moment shutdown starts.
#[utoipa::path(get, path = "/ready", tag = "probes", responses((status = 200, body = Status), (status = 503, body = Status)))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let json = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    if state.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            r#"{"status":"draining"}"#,
        )
    } else {
        (StatusCode::OK, json, r#"{"status":"ready"}"#)
    }
}

/// Prometheus text exposition (see ARCHITECTURE.md's metric contract).
#[utoipa::path(get, path = "/metrics", tag = "probes", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
}

/// Work handed to an executor slot.
enum Work {
    Cpu {
        cpu_target: Duration,
        complexity: u64,
    },
    Memory {
        reservation: Reservation,
        hold: Duration,
    },
    Io {
        delay: Duration,
    },
}

impl Work {
    fn kind(&self) -> &'static str {
        match self {
            Work::Cpu { .. } => "cpu",
            Work::Memory { .. } => "memory",
            Work::Io { .. } => "io",
        }
    }
}

/// Runs the work; `Ok((report, completed))` or `Err(reason)`.
async fn perform(
    state: &AppState,
    work: Work,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(Value, bool), String> {
    match work {
        Work::Cpu {
            cpu_target,
            complexity,
        } => {
            let counter = state.metrics.cpu_burn_seconds_total.clone();
            let cancel = cancel.clone();
            let report = state
                .load_threads
                .run(move || {
                    cpu::burn(
                        cpu_target,
                        complexity,
                        cpu::wall_cap_for(cpu_target),
                        &cancel,
                        &|delta| counter.inc_by(delta),
                    )
                })
                .await?;
            let completed = report.completed;
            Ok((
                serde_json::to_value(report).expect("serialisable"),
                completed,
            ))
        }
        Work::Memory { reservation, hold } => {
            let report = memory::hold_memory(reservation, hold, cancel).await?;
            let completed = report.completed;
            Ok((
                serde_json::to_value(report).expect("serialisable"),
                completed,
            ))
        }
        Work::Io { delay } => {
            let started = Instant::now();
            let completed = work::io_wait(delay, cancel).await;
            let report = IoReport {
                delay_ms: delay.as_millis() as u64,
                waited_seconds: started.elapsed().as_secs_f64(),
                completed,
            };
            Ok((
                serde_json::to_value(report).expect("serialisable"),
                completed,
            ))
        }
    }
}

/// A child span of the current one, only when spans are exported.
fn child_span(name: &str, kind: &str) -> tracing::Span {
    if telemetry::exporting() {
        tracing::info_span!("step", otel.name = name, job.kind = kind)
    } else {
        tracing::Span::none()
    }
}

fn queue_full(state: &AppState, kind: &str, mode: Mode, queue_size: u32) -> ApiError {
    state.metrics.job_finished(kind, mode.as_str(), "rejected");
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "queue_full",
        format!(
            "{queue_size} work items already wait for an executor on this replica; retry later"
        ),
    )
    .with_detail("queue_size", queue_size)
    .with_retry_after(1)
}

fn record_outcome(
    state: &AppState,
    kind: &str,
    mode: Mode,
    run: Duration,
    outcome: &Result<(Value, bool), String>,
) -> JobState {
    state
        .metrics
        .job_duration_seconds
        .with_label_values(&[kind])
        .observe(run.as_secs_f64());
    let job_state = match outcome {
        Ok((_, true)) => JobState::Done,
        Ok((_, false)) => JobState::Cancelled,
        Err(_) => JobState::Failed,
    };
    state
        .metrics
        .job_finished(kind, mode.as_str(), job_state.outcome());
    job_state
}

/// Admits work sync or async; the common path of `/load/cpu`, `/load/memory` and `/load/io`.
async fn submit(
    state: AppState,
    work: Work,
    mode: Mode,
    request: Value,
) -> Result<Response, ApiError> {
    let kind = work.kind();
    let ticket = state
        .executor
        .enqueue()
        .map_err(|full| queue_full(&state, kind, mode, full.queue_size))?;
    match mode {
        Mode::Sync => {
            let wait =
                tokio::time::timeout(state.config.slot_wait_timeout, Executor::acquire(ticket));
            let slot = tokio::select! {
                slot = wait.instrument(child_span("queue wait", kind)) => slot.map_err(|_| {
                    state.metrics.job_finished(kind, "sync", "rejected");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "executors_busy",
                        format!(
                            "no executor slot became free within {}; this replica is saturated",
                            humantime::format_duration(state.config.slot_wait_timeout)
                        ),
                    )
                    .with_detail("executors", state.executor.executors())
                    .with_retry_after(1)
                })?,
                _ = state.work_cancel.cancelled() => {
                    state.metrics.job_finished(kind, "sync", "cancelled");
                    return Err(ApiError::draining());
                }
            };
            let started = Instant::now();
            let outcome = perform(&state, work, &state.work_cancel)
                .instrument(child_span("work", kind))
                .await;
            let run = started.elapsed();
            let queue_wait = slot.queue_wait;
            drop(slot);
            record_outcome(&state, kind, mode, run, &outcome);
            match outcome {
                Ok((result, _)) => Ok(Json(SyncLoadResponse {
                    kind: kind.to_owned(),
                    queue_wait_seconds: queue_wait.as_secs_f64(),
                    run_seconds: run.as_secs_f64(),
                    served_by: state.pod_name.clone(),
                    request,
                    result,
                })
                .into_response()),
                Err(reason) => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "work_failed",
                    reason,
                )),
            }
        }
        Mode::Async => {
            let cancel = state.work_cancel.child_token();
            let id =
                state
                    .jobs
                    .create(kind, Mode::Async, JobState::Queued, request, cancel.clone());
            let job_span = if telemetry::exporting() {
                let span = tracing::info_span!(
                    parent: None,
                    "job",
                    otel.name = %format!("job {kind}"),
                    job.id = %id,
                    job.kind = kind,
                    trace_id = tracing::field::Empty,
                );
                // A job outlives its request: it gets its own trace, linked to the request that queued it.
                span.add_link(
                    tracing::Span::current()
                        .context()
                        .span()
                        .span_context()
                        .clone(),
                );
                span.record(
                    "trace_id",
                    tracing::field::display(span.context().span().span_context().trace_id()),
                );
                span
            } else {
                tracing::Span::none()
            };
            // Take the place in the slot queue now, in the handler: a spawned task would only join the queue when
            // first polled, and tasks on different workers can be polled out of submission order.
            let wait_span = job_span.in_scope(|| child_span("queue wait", kind));
            let mut acquire = Box::pin(Executor::acquire(ticket).instrument(wait_span));
            let acquired_now = match futures::poll!(acquire.as_mut()) {
                Poll::Ready(slot) => Some(slot),
                Poll::Pending => None,
            };
            let task_state = state.clone();
            state.job_tasks.spawn(
                async move {
                    let state = task_state;
                    let slot = match acquired_now {
                        Some(slot) => Some(slot),
                        None => tokio::select! {
                            biased;
                            _ = cancel.cancelled() => None,
                            _ = state.queue_cancel.cancelled() => None,
                            slot = acquire => Some(slot),
                        },
                    };
                    let Some(slot) = slot else {
                        let reason = if state.is_draining() {
                            "cancelled before it started: the replica is shutting down"
                        } else {
                            "cancelled before it started"
                        };
                        state
                            .jobs
                            .finish(id, JobState::Cancelled, None, Some(reason.into()));
                        state.metrics.job_finished(kind, "async", "cancelled");
                        return;
                    };
                    state.jobs.start(id, slot.queue_wait);
                    let started = Instant::now();
                    let outcome = perform(&state, work, &cancel)
                        .instrument(child_span("work", kind))
                        .await;
                    drop(slot);
                    let job_state =
                        record_outcome(&state, kind, Mode::Async, started.elapsed(), &outcome);
                    tracing::info!(job_id = %id, kind, state = job_state.outcome(), "job finished");
                    match outcome {
                        Ok((result, _)) => state.jobs.finish(id, job_state, Some(result), None),
                        Err(reason) => state.jobs.finish(id, job_state, None, Some(reason)),
                    }
                }
                .instrument(job_span),
            );
            Ok(accepted(&state, id, JobState::Queued))
        }
    }
}

fn accepted(state: &AppState, id: Uuid, job_state: JobState) -> Response {
    let location = format!("/jobs/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id: id,
            state: job_state,
            location: location.clone(),
            served_by: state.pod_name.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn refuse_if_draining(state: &AppState) -> Result<(), ApiError> {
    if state.is_draining() {
        Err(ApiError::draining())
    } else {
        Ok(())
    }
}

/// Burns one core for `duration_ms` of CPU time on a dedicated thread.
#[utoipa::path(post, path = "/load/cpu", tag = "load", request_body(content = Option<CpuLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = CpuLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = JobAccepted),
        (status = 400, description = "body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "token required", body = crate::error::ErrorBody),
        (status = 422, description = "a field is unknown, of the wrong type or out of range", body = crate::error::ErrorBody),
        (status = 429, description = "queue full (Retry-After)", body = crate::error::ErrorBody),
        (status = 503, description = "no executor slot in time, or draining (Retry-After)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn load_cpu(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = CpuLoadRequest::from_json(body)?;
    refuse_if_draining(&state)?;
    let work = Work::Cpu {
        cpu_target: Duration::from_millis(request.duration_ms),
        complexity: request.complexity,
    };
    submit(state, work, request.mode, json!(request)).await
}

/// Allocates and touches `size_mb` MiB, holds it for `duration_ms`, frees it; bounded by the memory budget.
#[utoipa::path(post, path = "/load/memory", tag = "load", request_body(content = Option<MemoryLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = MemoryLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = JobAccepted),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody),
        (status = 503, description = "over the memory budget (with budget_bytes, held_bytes, requested_bytes), no slot, or draining", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn load_memory(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = MemoryLoadRequest::from_json(body)?;
    refuse_if_draining(&state)?;
    let bytes = request.size_mb << 20;
    let reservation = state.memory.reserve(bytes).map_err(|over| {
        state
            .metrics
            .job_finished("memory", request.mode.as_str(), "rejected");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory_budget_exceeded",
            format!(
                "{} MiB would exceed the memory budget: {} of {} bytes are already held",
                request.size_mb, over.held, over.budget
            ),
        )
        .with_detail("budget_bytes", over.budget)
        .with_detail("held_bytes", over.held)
        .with_detail("requested_bytes", over.requested)
        .with_retry_after(1)
    })?;
    let work = Work::Memory {
        reservation,
        hold: Duration::from_millis(request.duration_ms),
    };
    submit(state, work, request.mode, json!(request)).await
}

/// Waits `delay_ms` without CPU while holding an executor slot (a slow downstream).
#[utoipa::path(post, path = "/load/io", tag = "load", request_body(content = Option<IoLoadRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "sync: work done", body = IoLoadResponse),
        (status = 202, description = "async: queued; follow Location", body = JobAccepted),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn load_io(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = IoLoadRequest::from_json(body)?;
    refuse_if_draining(&state)?;
    let work = Work::Io {
        delay: Duration::from_millis(request.delay_ms),
    };
    submit(state, work, request.mode, json!(request)).await
}

/// Starts a sustained CPU job on dedicated threads; answers 202 at once.
#[utoipa::path(post, path = "/load/cpu/sustained", tag = "sustained", request_body(content = Option<SustainedLoadRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "started; follow Location", body = JobAccepted),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 429, description = "too many sustained workers on this replica", body = crate::error::ErrorBody),
        (status = 503, description = "draining", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_start(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = SustainedLoadRequest::from_json(body)?;
    refuse_if_draining(&state)?;
    let cancel = state.work_cancel.child_token();
    let job = state
        .sustained
        .start(
            request.workers as u32,
            Duration::from_secs(request.duration_seconds),
            request.complexity,
            cancel.clone(),
        )
        .map_err(|too_many| {
            state.metrics.job_finished("sustained", "async", "rejected");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sustained_workers",
                format!(
                    "{} more workers would exceed this replica's {} sustained workers ({} running)",
                    too_many.requested, too_many.max_workers, too_many.active
                ),
            )
            .with_detail("max_workers", too_many.max_workers)
            .with_detail("active_workers", too_many.active)
            .with_retry_after(1)
        })?;
    let id = state.jobs.create(
        "sustained",
        Mode::Async,
        JobState::Running,
        json!(request),
        cancel,
    );
    let task_state = state.clone();
    state.job_tasks.spawn(async move {
        let report = job.await;
        let job_state = if report.completed {
            JobState::Done
        } else {
            JobState::Cancelled
        };
        task_state
            .metrics
            .job_duration_seconds
            .with_label_values(&["sustained"])
            .observe(report.wall_seconds);
        task_state
            .metrics
            .job_finished("sustained", "async", job_state.outcome());
        task_state.jobs.finish(
            id,
            job_state,
            Some(serde_json::to_value(report).expect("serialisable")),
            None,
        );
    });
    tracing::info!(job_id = %id, workers = request.workers, duration_seconds = request.duration_seconds, "sustained cpu job started");
    Ok(accepted(&state, id, JobState::Running))
}

/// Sustained jobs: all, or one with `?job_id=`.
#[utoipa::path(get, path = "/load/cpu/sustained/status", tag = "sustained",
    params(("job_id" = Option<Uuid>, Query, description = "only this job")),
    responses(
        (status = 200, body = SustainedStatus),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, description = "no such sustained job", body = crate::error::ErrorBody),
        (status = 422, description = "bad job_id or unknown parameter", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_status(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<SustainedStatus>, ApiError> {
    let fields = Fields::new(
        query
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
        &["job_id"],
    )?;
    let jobs = match fields.uuid("job_id")? {
        Some(id) => {
            let job = state.jobs.get(id).filter(|job| job.kind == "sustained");
            vec![job.ok_or_else(|| ApiError::not_found(format!("no sustained job {id}")))?]
        }
        None => state.jobs.list(Some("sustained")),
    };
    Ok(Json(SustainedStatus {
        active_workers: state.sustained.active_workers(),
        max_workers: state.config.max_sustained_workers,
        jobs,
    }))
}

/// Stops one sustained job (`{"job_id"}`) or all (empty body).
#[utoipa::path(post, path = "/load/cpu/sustained/stop", tag = "sustained", request_body(content = Option<SustainedStopRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = SustainedStopped),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, description = "no such sustained job", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn sustained_stop(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<SustainedStopped>, ApiError> {
    let request = SustainedStopRequest::from_json(body)?;
    let stopped = match request.job_id {
        Some(id) => {
            if state.jobs.kind_of(id).as_deref() != Some("sustained") {
                return Err(ApiError::not_found(format!("no sustained job {id}")));
            }
            let job = state
                .jobs
                .cancel(id)
                .ok_or_else(|| ApiError::not_found(format!("no sustained job {id}")))?;
            if job.state.is_finished() {
                vec![]
            } else {
                vec![id]
            }
        }
        None => state.jobs.cancel_kind("sustained"),
    };
    Ok(Json(SustainedStopped { stopped }))
}

fn parse_job_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no job {id} (job ids are UUIDs)")))
}

/// One job: state, timings and result.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id from a 202 response")),
    responses(
        (status = 200, body = crate::jobs::JobView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, description = "unknown, or forgotten after the retention time", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::jobs::JobView>, ApiError> {
    let id = parse_job_id(&id)?;
    state.jobs.get(id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no job {id} (unknown, or finished longer ago than the retention time)"
        ))
    })
}

/// Cancels a queued or running job; answers its view (a finished job is left as it is).
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id from a 202 response")),
    responses(
        (status = 200, body = crate::jobs::JobView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job_cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::jobs::JobView>, ApiError> {
    let id = parse_job_id(&id)?;
    state
        .jobs
        .cancel(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

#[cfg(test)]
mod tests {
    use super::route_template;
    use utoipa::OpenApi;

    #[test]
    fn every_documented_route_maps_to_its_own_template() {
        let spec = crate::openapi::ApiDoc::openapi();
        let paths: Vec<&String> = spec.paths.paths.keys().collect();
        assert!(paths.len() >= 11, "{paths:?}");
        for template in paths {
            let concrete = template.replace("{id}", "0b7c5e0e-52f6-4d3c-9a55-1f7f2b6f9a10");
            assert_eq!(route_template(&concrete), template, "{concrete}");
        }
        assert_eq!(
            route_template("/apidocs/swagger-ui.css"),
            "/apidocs/{*rest}"
        );
        assert_eq!(route_template("/apidocs"), "/apidocs");
        assert_eq!(route_template("/apispec.json"), "/apispec.json");
    }

    #[test]
    fn anything_else_is_unmatched() {
        for path in [
            "",
            "/nope",
            "/health/",
            "/jobs/",
            "/jobs/a/b",
            "/load",
            "/load/cpu/",
            "/apidocs//x/",
        ] {
            let expected = if path == "/apidocs//x/" {
                "/apidocs/{*rest}"
            } else {
                "unmatched"
            };
            assert_eq!(route_template(path), expected, "{path:?}");
        }
    }
}
