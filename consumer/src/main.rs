//! The `consumer` binary: parse config, set up logs and traces, bind, serve until SIGTERM/SIGINT, drain, exit 0. A
//! failure to start or serve exits 6 (`contract::exit::RUNTIME_ERROR`); clap's usage errors exit 2 (docs/exit-codes.md).

use anyhow::Context;
use clap::Parser;

#[cfg(feature = "counting-allocator")]
#[global_allocator]
static ALLOCATOR: consumer::CountingAllocator = consumer::CountingAllocator::new();

#[tokio::main]
async fn main() {
    let config = consumer::Config::parse();
    let code = match run(config).await {
        Ok(()) => contract::exit::OK,
        Err(error) => {
            eprintln!("consumer: {error:#}");
            contract::exit::RUNTIME_ERROR
        }
    };
    std::process::exit(code);
}

async fn run(config: consumer::Config) -> anyhow::Result<()> {
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
