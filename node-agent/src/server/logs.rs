//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log with the kubelet's query parameters
//! (`follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes`). Following streams
//! new lines as they are written and ends when the container's run ends.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::Api;
use crate::logs;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    #[serde(default)]
    follow: Option<String>,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    #[serde(default)]
    timestamps: Option<String>,
    #[serde(default)]
    previous: Option<String>,
    limit_bytes: Option<i64>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

fn bad(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

pub async fn container_logs(
    State(api): State<Api>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(params): Query<LogParams>,
) -> Response {
    let Some(entry) = api.agent.registry.get(&namespace, &pod) else {
        return bad(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        );
    };
    let Some(c) = entry.containers.get(&container).cloned() else {
        return bad(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let previous = flag(&params.previous);
    let restart = if previous {
        match c.restart_count.checked_sub(1) {
            Some(r) => r,
            None => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                );
            }
        }
    } else {
        c.restart_count
    };
    let path = logs::file(&entry.log_dir, &container, restart);
    let since = match (params.since_seconds, params.since_time.as_deref()) {
        (Some(s), _) if s > 0 => Some(now() - s as f64),
        (_, Some(t)) => match t.parse::<k8s_openapi::jiff::Timestamp>() {
            Ok(t) => Some(t.as_nanosecond() as f64 / 1e9),
            Err(e) => return bad(StatusCode::BAD_REQUEST, format!("sinceTime {t:?}: {e}")),
        },
        _ => None,
    };
    let query = logs::Query {
        tail_lines: params.tail_lines.filter(|n| *n >= 0).map(|n| n as usize),
        since,
        timestamps: flag(&params.timestamps),
        limit_bytes: params.limit_bytes.filter(|n| *n > 0).map(|n| n as usize),
    };
    let (first, offset) = match logs::read(&path, &query) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => {
            return bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", path.display()),
            );
        }
    };
    if !flag(&params.follow) || previous {
        return (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response();
    }
    let registry = api.agent.registry.clone();
    let timestamps = query.timestamps;
    let stream = async_stream(first, path, offset, timestamps, move || {
        registry
            .get(&namespace, &pod)
            .and_then(|p| p.containers.get(&container).cloned())
            .is_some_and(|now| now.running && now.restart_count == restart)
    });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Where a follow is.
struct Follow {
    pending: Option<Vec<u8>>,
    offset: u64,
    finished: bool,
}

/// The first chunk, then new lines every 200 ms until the run is over and the file has no more.
fn async_stream(
    first: Vec<u8>,
    path: std::path::PathBuf,
    offset: u64,
    timestamps: bool,
    still_running: impl Fn() -> bool + Send + Sync + 'static,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let still_running = std::sync::Arc::new(still_running);
    let start = Follow {
        pending: Some(first),
        offset,
        finished: false,
    };
    futures::stream::unfold(start, move |mut follow| {
        let path = path.clone();
        let still_running = still_running.clone();
        async move {
            if let Some(first) = follow.pending.take() {
                return Some((Ok(Bytes::from(first)), follow));
            }
            if follow.finished {
                return None;
            }
            loop {
                // Asked before reading, so that lines written just before the end are still sent.
                let running = still_running();
                match logs::read_from(&path, follow.offset, timestamps) {
                    Ok((chunk, next)) => {
                        follow.offset = next;
                        if !chunk.is_empty() {
                            return Some((Ok(Bytes::from(chunk)), follow));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        follow.finished = true;
                        return Some((Err(e), follow));
                    }
                }
                if !running {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}
