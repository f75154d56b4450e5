//! The benchmark's baseline: a minimal axum hello-world with the same two routes the benchmark drives
//! (`GET /health` and `POST /load/cpu` burning `duration_ms` of CPU on a blocking thread), and none of the
//! consumer's validation, metrics, tracing, slots or counting allocator. `bench/consumer/run.sh` compares the two.
//! Usage: `hello [PORT]` (default 8090; 0 picks a free port); prints `listening <addr>`.

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn load_cpu(Json(body): Json<Value>) -> Json<Value> {
    let duration_ms = body
        .get("duration_ms")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    let target = Duration::from_millis(duration_ms);
    let report = tokio::task::spawn_blocking(move || {
        consumer::load::cpu::burn(target, 5, target * 10, &CancellationToken::new(), &|_| {})
    })
    .await
    .expect("burn thread");
    Json(json!({"cpu_seconds": report.cpu_seconds, "iterations": report.iterations}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(8090);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    let app = Router::new()
        .route("/health", get(health))
        .route("/load/cpu", post(load_cpu));
    axum::serve(listener, app).await
}
