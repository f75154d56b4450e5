//! The scaler's HTTP side: `/metrics` (Prometheus text), `/health` (liveness), `/ready` (503 while draining) and
//! `/explain` (every known ScaledObject and trigger, its value, and the replicas the HPA formula gives from it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::{Registry, hpa_replicas};

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

/// The HTTP routes.
pub fn router(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/explain", get(explain))
        .fallback(not_found)
        .with_state(AppState {
            registry,
            metrics,
            shutdown,
        })
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    state.registry.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({"error": "shutting_down", "message": "the scaler is draining"}),
            ),
        )
            .into_response()
    } else {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "not_found",
            "message": "no such route",
            "allowed": "/metrics, /health, /ready, /explain",
        })),
    )
        .into_response()
}

/// `GET /explain` response (schema documented in docs/scaler.md; keep it stable).
#[derive(Debug, Serialize)]
pub struct Explain {
    pub generated_at: String,
    pub scaled_objects: Vec<ExplainScaledObject>,
    pub sources: Vec<ExplainSource>,
}

#[derive(Debug, Serialize)]
pub struct ExplainScaledObject {
    pub scaled_object: String,
    pub active: bool,
    pub triggers: Vec<ExplainTrigger>,
}

#[derive(Debug, Serialize)]
pub struct ExplainTrigger {
    pub scaled_object: String,
    /// The metricName (also the `trigger` label of the scaler's metrics).
    pub trigger: String,
    pub metric_name: String,
    pub kind: String,
    pub source: String,
    pub query: String,
    pub value: Option<f64>,
    pub age_seconds: Option<f64>,
    pub stale: bool,
    pub target: f64,
    pub activation_target: f64,
    pub active: Option<bool>,
    pub above_activation: Option<bool>,
    pub metric_type: String,
    pub window_seconds: u64,
    pub route: Option<String>,
    pub current_replicas: Option<u32>,
    pub replicas_for_value: Option<u64>,
    pub error: Option<String>,
    pub pending: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExplainSource {
    pub source: String,
    pub kind: String,
    pub poll_interval_seconds: f64,
    pub max_staleness_seconds: f64,
    pub polls: u64,
    pub errors: u64,
    pub requests: u64,
    pub last_poll_age_seconds: Option<f64>,
    pub last_poll_duration_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub pods: Option<usize>,
}

/// Builds the explanation of every known trigger and source.
pub fn build_explain(registry: &Registry) -> Explain {
    let mut by_object: BTreeMap<String, Vec<ExplainTrigger>> = BTreeMap::new();
    for entry in registry.triggers() {
        let spec = entry.spec();
        let reading = entry.reading();
        let age = reading.value_at.map(|at| at.elapsed());
        let stale = age.is_some_and(|age| age > entry.source.max_staleness);
        let trigger = ExplainTrigger {
            scaled_object: entry.key.scaled_object.clone(),
            trigger: entry.key.metric_name.clone(),
            metric_name: entry.key.metric_name.clone(),
            kind: spec.kind.name().to_string(),
            source: entry.source.id.clone(),
            query: spec.describe(),
            value: reading.value,
            age_seconds: age.map(|a| (a.as_secs_f64() * 1000.0).round() / 1000.0),
            stale,
            target: spec.target,
            activation_target: spec.activation_target,
            active: reading.active,
            above_activation: reading.value.map(|v| v > spec.activation_target),
            metric_type: spec.metric_type.as_str().to_string(),
            window_seconds: spec.window.as_secs(),
            route: spec.route.clone(),
            current_replicas: reading.replicas,
            replicas_for_value: reading
                .value
                .and_then(|v| hpa_replicas(spec.metric_type, v, spec.target, reading.replicas)),
            error: reading.error.clone(),
            pending: reading.pending.clone(),
            note: reading.note.clone(),
        };
        by_object
            .entry(entry.key.scaled_object.clone())
            .or_default()
            .push(trigger);
    }
    let scaled_objects = by_object
        .into_iter()
        .map(|(scaled_object, triggers)| ExplainScaledObject {
            active: triggers.iter().any(|t| t.active == Some(true) && !t.stale),
            scaled_object,
            triggers,
        })
        .collect();
    let sources = registry
        .sources()
        .into_iter()
        .map(|source| {
            let stats = source.stats();
            ExplainSource {
                source: source.id.clone(),
                kind: source.kind().to_string(),
                poll_interval_seconds: source.interval.as_secs_f64(),
                max_staleness_seconds: source.max_staleness.as_secs_f64(),
                polls: stats.polls,
                errors: stats.errors,
                requests: stats.requests,
                last_poll_age_seconds: stats.last_poll_at.map(|at| at.elapsed().as_secs_f64()),
                last_poll_duration_seconds: stats.last_duration.map(|d| d.as_secs_f64()),
                last_error: stats.last_error,
                pods: stats.pods,
            }
        })
        .collect();
    Explain {
        generated_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        scaled_objects,
        sources,
    }
}

async fn explain(State(state): State<AppState>) -> Response {
    axum::Json(build_explain(&state.registry)).into_response()
}
