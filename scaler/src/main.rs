//! The `scaler` binary: parse configuration, bind the gRPC and HTTP listeners, serve until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use scaler::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
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

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the scaler");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
}
