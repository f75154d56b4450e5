//! The scaler's HTTP side: `/metrics` (Prometheus text), `/health` (liveness), `/ready` (503 while draining) and
//! `/explain` (every known ScaledObject and trigger, its value, and the replicas the HPA formula gives from it).

use std::collections::BTreeMap;
use std::sync::Arc;

use autoscaler::hpa::replicas_for_value;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use contract::explain::{Explain, ExplainScaledObject, ExplainSource, ExplainTrigger};
use contract::routes;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::trigger::SourceSpec;

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
        .route(routes::METRICS, get(metrics_page))
        .route(routes::HEALTH, get(health))
        .route(routes::READY, get(ready))
        .route(routes::EXPLAIN, get(explain))
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
            "allowed": ([routes::METRICS, routes::HEALTH, routes::READY, routes::EXPLAIN].join(", ")),
        })),
    )
        .into_response()
}

/// Builds the explanation of every known trigger and source (`contract::explain`, documented in docs/scaler.md).
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
            above_activation: reading
                .value
                .map(|v| reading.activation_value.unwrap_or(v) > spec.activation_target),
            metric_type: spec.metric_type.to_string(),
            window_seconds: spec.window.as_secs(),
            route: spec.route.clone(),
            current_replicas: reading.replicas,
            replicas_for_value: reading
                .value
                .and_then(|v| {
                    replicas_for_value(spec.metric_type, v, spec.target, reading.replicas)
                })
                .map(u64::from),
            error: reading.error.clone(),
            pending: reading.pending.clone(),
            note: reading.note.clone(),
            kafka: reading
                .kafka
                .as_ref()
                .and_then(|report| match &spec.source {
                    SourceSpec::Kafka {
                        consumer_group,
                        topic,
                        ..
                    } => Some(report.explain(consumer_group, topic.as_deref())),
                    _ => None,
                }),
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
