//! The `scaler` binary: parse configuration, bind the gRPC and HTTP listeners, serve until SIGTERM/SIGINT. Exit codes
//! from `contract::exit` (docs/exit-codes.md): 0 after a clean drain, 2 for bad configuration, 6 for a runtime failure.

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use contract::exit;
use scaler::{Config, ScalerError};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    let code = match run(config).await {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("scaler: {error:#}");
            match error.downcast_ref::<ScalerError>() {
                Some(ScalerError::Config(_) | ScalerError::Client(_)) => exit::USAGE,
                _ => exit::RUNTIME_ERROR,
            }
        }
    };
    std::process::exit(code);
}

async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = scaler::telemetry::init()?;
    config.validate()?;
    let grpc = TcpListener::bind((config.host, config.grpc_port))
        .await
        .with_context(|| format!("cannot bind gRPC on {}:{}", config.host, config.grpc_port))?;
    let http = TcpListener::bind((config.host, config.http_port))
        .await
        .with_context(|| format!("cannot bind HTTP on {}:{}", config.host, config.http_port))?;
    scaler::serve(grpc, http, config, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (before the listeners are served),
/// not when the future is first polled, so a signal right after the `listening` lines drains instead of killing.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let signals = procs::Signals::install();
    async move {
        match signals {
            Ok(mut signals) => {
                signals.next().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM/SIGINT; the scaler stops only when killed");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutdown signal received");
    }
}
