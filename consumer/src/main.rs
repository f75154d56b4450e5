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

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is called, in `main` before the
/// listener is served, not when the future is first polled: a signal sent right after the `listening` line would
/// otherwise meet the default action and kill the process without a drain.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Linux");
    let mut interrupt =
        signal(SignalKind::interrupt()).expect("installing a SIGINT handler cannot fail on Linux");
    async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
    }
}
