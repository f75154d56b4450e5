//! The console's HTTP routes (CONSOLE-API.md): the JSON API under `/api/` (documented by [`ApiDoc`] at
//! `/api/openapi.json`), the live feed as server-sent events, the downloads, the token guard, and the page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use futures::StreamExt as _;
use load::profile::Profile;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use super::api::{
    Health, ProfileInfo, RateRequest, RunData, RunMeta, ScaledObjectInfo, StartRequest, Status,
    TriggerInfo, ValidateOk, ValidateRequest,
};
use super::assets::{self, Assets};
use super::error::{ApiError, ErrorBody};
use super::form;
use super::manager::{Event, Manager, Refusal, Subscription, id_stamp, now_rfc3339};
use crate::LabArgs;

/// What every handler reads.
pub struct Console {
    pub manager: Arc<Manager>,
    /// The defaults of console-started runs (binaries, consumer arguments, settle, ...): the command line's.
    pub base: LabArgs,
    pub assets: Assets,
    pub token: Option<String>,
}

pub(super) type Shared = State<Arc<Console>>;
type ApiResult<T> = Result<T, ApiError>;

/// The whole application.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi))
        .route("/api/profiles", get(profiles))
        .route("/api/scaledobject", get(scaledobject))
        .route("/api/validate", post(validate))
        .route("/api/runs", get(list_runs).post(start_run))
        .route("/api/runs/{id}", get(get_run).delete(delete_run))
        .route("/api/runs/{id}/stop", post(stop_run))
        .route("/api/runs/{id}/rate", post(set_rate))
        .route("/api/runs/{id}/chaos", post(super::chaos::inject))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/report.json", get(report_json))
        .route("/api/runs/{id}/intervals.csv", get(intervals_csv))
        .route("/api/runs/{id}/report.html", get(report_html))
        .route("/", get(index))
        .route("/{*path}", get(file))
        .layer(axum::middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// With a token set, every `/api/` request carries it: in the header, or for a GET (EventSource cannot set headers)
/// as `?token=`. State-changing requests only by header, so a link cannot start or stop anything.
async fn guard(State(console): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = &console.token
        && request.uri().path().starts_with("/api/")
    {
        let by_header = request
            .headers()
            .get(contract::headers::LAB_TOKEN)
            .is_some_and(|v| same(v.as_bytes(), token.as_bytes()));
        let by_query = request.method() == Method::GET
            && request.uri().query().is_some_and(|q| {
                q.split('&')
                    .filter_map(|pair| pair.strip_prefix("token="))
                    .any(|t| same(t.as_bytes(), token.as_bytes()))
            });
        if !(by_header || by_query) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "this console needs its token: header {}{}",
                    contract::headers::LAB_TOKEN,
                    if request.method() == Method::GET {
                        " or ?token="
                    } else {
                        ""
                    }
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Equal, in a time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn refusal(id: &str, r: Refusal) -> ApiError {
    match r {
        Refusal::Busy(active) => ApiError::conflict(
            "run_active",
            format!("a run is already active ({active}); stop it or wait for it to end"),
        ),
        Refusal::NotFound => ApiError::not_found(id),
        Refusal::NotRunning => {
            ApiError::conflict("not_running", format!("run {id} is not running"))
        }
    }
}

#[utoipa::path(get, path = "/api/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The built-in load profiles, each also as editable YAML.
#[utoipa::path(get, path = "/api/profiles", responses((status = 200, body = Vec<ProfileInfo>)))]
async fn profiles() -> Json<Vec<ProfileInfo>> {
    Json(
        Profile::builtin_names()
            .iter()
            .filter_map(|name| Profile::builtin(name))
            .map(|p| ProfileInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                duration_s: p.duration().as_secs_f64(),
                yaml: p.to_yaml(),
            })
            .collect(),
    )
}

/// The ScaledObject runs use unless the form gives one.
#[utoipa::path(get, path = "/api/scaledobject", responses((status = 200, body = ScaledObjectInfo)))]
async fn scaledobject(State(c): Shared) -> Json<ScaledObjectInfo> {
    let (source, yaml) = form::default_scaledobject(&c.base);
    Json(ScaledObjectInfo { source, yaml })
}

/// Check a profile or a ScaledObject as a run would.
#[utoipa::path(post, path = "/api/validate", request_body = ValidateRequest,
    responses((status = 200, body = ValidateOk), (status = 422, body = ErrorBody)))]
async fn validate(State(c): Shared, body: Bytes) -> ApiResult<Json<ValidateOk>> {
    let summary = form::validate(&c.base, &body)?;
    Ok(Json(ValidateOk { ok: true, summary }))
}

/// Start a run (one at a time).
#[utoipa::path(post, path = "/api/runs", request_body = StartRequest,
    responses((status = 201, body = RunMeta), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_run(State(c): Shared, body: Bytes) -> ApiResult<(StatusCode, Json<RunMeta>)> {
    let form = form::start_form(&body)?;
    let config = form::scaledobject(
        &c.base,
        form.scaledobject_yaml.as_deref(),
        form.max_replicas,
        form.time_scale,
    )?;
    let cancel = CancellationToken::new();
    let begun = c.manager.begin(
        &id_stamp(),
        &form.profile.name,
        form.rate_multiplier,
        cancel.clone(),
        |id, dir| {
            let args = form::lab_args(&c.base, &form, dir)?;
            let meta = RunMeta {
                id: id.to_string(),
                label: form.label.clone().unwrap_or_default(),
                profile: form.profile.name.clone(),
                status: Status::Starting,
                started_at: now_rfc3339(),
                ended_at: None,
                time_scale: form.time_scale,
                rate_multiplier: form.rate_multiplier,
                scaledobject: config.name.clone(),
                max_replicas: form.max_replicas.or(c.base.max_replicas),
                exit_code: None,
                error: None,
                summary: None,
            };
            Ok::<_, ApiError>((meta, triggers(&config), args))
        },
    );
    let (meta, hooks, args) = begun.map_err(|r| refusal("", r))??;
    let manager = c.manager.clone();
    let id = meta.id.clone();
    tokio::spawn(async move {
        let out = args.out.clone();
        let result = crate::run_observed(args, cancel.clone(), &manager.registry, hooks).await;
        manager.finish(&id, &result, cancel.is_cancelled(), &out);
    });
    Ok((StatusCode::CREATED, Json(meta)))
}

/// The ScaledObject's triggers as the page labels them.
pub fn triggers(config: &autoscaler::ScalingConfig) -> Vec<TriggerInfo> {
    config
        .triggers
        .iter()
        .map(|t| TriggerInfo {
            name: t.name.clone(),
            metric_type: t.metric_type.to_string(),
            target: ["target", "lagThreshold", "threshold"]
                .iter()
                .find_map(|k| t.metadata.get(*k))
                .and_then(|v| v.parse().ok()),
        })
        .collect()
}

/// Stop the active run; its partial report is written.
#[utoipa::path(post, path = "/api/runs/{id}/stop", params(("id" = String, Path)),
    responses((status = 202, body = RunMeta), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_run(
    State(c): Shared,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunMeta>)> {
    let meta = c.manager.stop(&id).map_err(|r| refusal(&id, r))?;
    Ok((StatusCode::ACCEPTED, Json(meta)))
}

/// Change the active run's rate multiplier (takes effect within a second).
#[utoipa::path(post, path = "/api/runs/{id}/rate", params(("id" = String, Path)), request_body = RateRequest,
    responses((status = 200, body = RunMeta), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn set_rate(
    State(c): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RunMeta>> {
    let map = form::object(&body)?;
    if let Some(key) = map.keys().find(|k| *k != "multiplier") {
        return Err(ApiError::field(
            key,
            map[key].clone(),
            "multiplier",
            format!("unknown field {key:?}"),
        ));
    }
    let multiplier = form::number(&map, "multiplier", (0.1, 10.0))?.ok_or_else(|| {
        ApiError::field(
            "multiplier",
            serde_json::Value::Null,
            "0.1..=10",
            "multiplier is required",
        )
    })?;
    c.manager
        .set_rate(&id, multiplier)
        .map(Json)
        .map_err(|r| refusal(&id, r))
}

/// Every run, newest first.
#[utoipa::path(get, path = "/api/runs", responses((status = 200, body = Vec<RunMeta>)))]
async fn list_runs(State(c): Shared) -> Json<Vec<RunMeta>> {
    Json(c.manager.list())
}

fn run_data(c: &Console, id: &str) -> ApiResult<RunData> {
    c.manager.get(id).ok_or_else(|| ApiError::not_found(id))
}

/// Everything known about a run.
#[utoipa::path(get, path = "/api/runs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = RunData), (status = 404, body = ErrorBody)))]
async fn get_run(State(c): Shared, Path(id): Path<String>) -> ApiResult<Json<RunData>> {
    run_data(&c, &id).map(Json)
}

/// Remove a run that is not active from history.
#[utoipa::path(delete, path = "/api/runs/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_run(State(c): Shared, Path(id): Path<String>) -> ApiResult<StatusCode> {
    c.manager.delete(&id).map_err(|r| match r {
        Refusal::Busy(_) => {
            ApiError::conflict("run_active", format!("run {id} is active; stop it first"))
        }
        other => refusal(&id, other),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

fn sse<T: Serialize>(name: &str, data: &T) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| SseEvent::default().event(name))
}

fn to_sse(event: &Event) -> SseEvent {
    match event {
        Event::Sample(s) => sse("sample", s),
        Event::Decision(d) => sse("decision", d),
        Event::Note(n) => sse("note", n),
        Event::Status(m) => sse("status", m),
    }
}

/// The live feed: `snapshot`, then `sample`, `decision`, `note` and `status` events until the final status.
#[utoipa::path(get, path = "/api/runs/{id}/events", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream: snapshot (RunData), sample (Sample), decision, note, status (RunMeta)", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody)))]
async fn events(
    State(c): Shared,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let subscription = c
        .manager
        .subscribe(&id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    let (first, receiver) = match subscription {
        Subscription::Live(data, receiver) => (vec![sse("snapshot", &data)], Some(receiver)),
        Subscription::Ended(data) => (
            vec![sse("snapshot", &data), sse("status", &data.meta)],
            None,
        ),
    };
    let live = futures::stream::unfold(receiver, |receiver| async move {
        let mut receiver = receiver?;
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    let last = matches!(&event, Event::Status(m) if m.status.is_final());
                    return Some((to_sse(&event), (!last).then_some(receiver)));
                }
                // A client too slow for the feed misses events; the next ones still come.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::stream::iter(first).chain(live).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn download(
    body: impl Into<axum::body::Body>,
    content_type: &'static str,
    name: String,
) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// The run's report.json (once it has ended).
#[utoipa::path(get, path = "/api/runs/{id}/report.json", params(("id" = String, Path)),
    responses((status = 200, description = "The lab's report.json", content_type = "application/json"), (status = 404, body = ErrorBody)))]
async fn report_json(State(c): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    let data = run_data(&c, &id)?;
    let path = c.manager.history().dir(&id).join("report.json");
    match std::fs::read(&path) {
        Ok(bytes) if data.meta.status.is_final() => Ok(download(
            bytes,
            "application/json",
            format!("{id}-report.json"),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {id} has no report (yet): it is written when the run ends"),
        )),
    }
}

/// The CSV's columns, in order.
pub const CSV_HEADER: &str = "t_s,offered_rps,achieved_rps,ok,errors,dropped,p50_ms,p90_ms,p95_ms,p99_ms,p99_9_ms,max_ms,desired,current,ready,draining,backlog";

/// One row per second.
#[utoipa::path(get, path = "/api/runs/{id}/intervals.csv", params(("id" = String, Path)),
    responses((status = 200, description = "CSV with the header t_s,offered_rps,...,backlog", content_type = "text/csv"), (status = 404, body = ErrorBody)))]
async fn intervals_csv(State(c): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    let data = run_data(&c, &id)?;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in &data.samples {
        let l = &s.latency_ms;
        csv.push_str(&format!(
            "{},{:.3},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            s.t_s,
            s.offered_rps,
            s.achieved_rps,
            s.ok,
            s.errors,
            s.dropped,
            l.p50,
            l.p90,
            l.p95,
            l.p99,
            l.p99_9,
            l.max,
            opt(s.replicas.desired),
            opt(s.replicas.current),
            opt(s.replicas.ready),
            opt(s.replicas.draining),
            s.backlog.map(|b| b.to_string()).unwrap_or_default(),
        ));
    }
    Ok(download(
        csv,
        "text/csv; charset=utf-8",
        format!("{id}-intervals.csv"),
    ))
}

/// The self-contained offline report: the page with its script, style and this run's data inlined.
#[utoipa::path(get, path = "/api/runs/{id}/report.html", params(("id" = String, Path)),
    responses((status = 200, description = "One HTML file, no network needed", content_type = "text/html"), (status = 404, body = ErrorBody)))]
async fn report_html(State(c): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    let data = run_data(&c, &id)?;
    let json = serde_json::to_string(&data).map_err(|e| ApiError::io(e.to_string()))?;
    let html = c.assets.report_html(&json).map_err(ApiError::io)?;
    Ok(download(
        html,
        "text/html; charset=utf-8",
        format!("{id}-report.html"),
    ))
}

async fn index(State(c): Shared) -> Response {
    serve(&c.assets, assets::INDEX)
}

async fn file(State(c): Shared, Path(path): Path<String>) -> Response {
    if path.starts_with("api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route /{path}"),
        )
        .into_response();
    }
    serve(&c.assets, &path)
}

fn serve(assets: &Assets, path: &str) -> Response {
    match assets.get(path) {
        Some(bytes) => {
            let mut response = Response::new(axum::body::Body::from(bytes.into_owned()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(assets::content_type(path)),
            );
            response
        }
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no file /{path}"),
        )
        .into_response(),
    }
}

/// The OpenAPI document of every `/api` route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "lab console API",
        description = "Start, watch, change and stop lab runs; history and downloads. \
        With --ui-token set, every request needs the x-lab-token header (GETs may use ?token=)."
    ),
    paths(
        health,
        openapi,
        profiles,
        scaledobject,
        validate,
        start_run,
        list_runs,
        get_run,
        delete_run,
        stop_run,
        set_rate,
        super::chaos::inject,
        events,
        report_json,
        intervals_csv,
        report_html
    ),
    components(schemas(
        ErrorBody,
        RunMeta,
        RunData,
        StartRequest,
        RateRequest,
        super::chaos::ChaosRequest,
        super::chaos::ChaosDone,
        ValidateRequest,
        ValidateOk,
        ProfileInfo,
        ScaledObjectInfo,
        Health
    ))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_api_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/health",
            "/api/openapi.json",
            "/api/profiles",
            "/api/scaledobject",
            "/api/validate",
            "/api/runs",
            "/api/runs/{id}",
            "/api/runs/{id}/stop",
            "/api/runs/{id}/rate",
            "/api/runs/{id}/events",
            "/api/runs/{id}/report.json",
            "/api/runs/{id}/intervals.csv",
            "/api/runs/{id}/report.html",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing from the OpenAPI document"
            );
        }
        assert!(
            paths["/api/runs"].get("post").is_some()
                && paths["/api/runs/{id}"].get("delete").is_some()
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
