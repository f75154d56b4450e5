//! The `consumer` binary: parse config, set up logs and traces, bind, serve until SIGTERM/SIGINT, drain, exit 0.

use anyhow::Context;
use clap::Parser;

#[cfg(feature = "counting-allocator")]
#[global_allocator]
static ALLOCATOR: consumer::CountingAllocator = consumer::CountingAllocator::new();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = consumer::Config::parse();
    let telemetry = consumer::telemetry::init(&config.log_format)?;
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let result = consumer::serve(listener, config, shutdown_signal()).await;
    // Flushing spans blocks; keep it off the runtime's worker threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .context("telemetry shutdown")?;
    result.context("consumer server")
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Linux");
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
    }
}
