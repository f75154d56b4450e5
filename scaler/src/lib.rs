//! KEDA external scaler for the lab's consumer: a tonic gRPC server for KEDA's `externalscaler.proto` that turns the
//! consumer's metrics (read from Prometheus or scraped from the pods directly) into ready-made triggers, plus an HTTP
//! side for `/metrics`, `/health`, `/ready` and `/explain`.
//!
//! Module map (each depends only on those listed after it): [`service`] (the gRPC RPCs) and [`http`] (`/explain`,
//! probes) answer from the [`registry`] (triggers and sources remembered, idle ones forgotten), which starts one
//! [`poller`] per source; a poller reads Prometheus ([`prom`]) or the pods ([`scrape`], [`exposition`]), computes the
//! direct source's rates and quantiles ([`direct`]) and writes into the [`entry`]s, whose [`reading`] holds the value,
//! staleness and hysteresis rules. [`trigger`] parses metadata into what to measure; [`client`] holds the HTTP
//! clients and their TLS; [`metrics`], [`config`] and [`telemetry`] are the process's own. A `kafka` trigger's poller
//! reads the group's offsets with [`kafka`]'s reader and applies KEDA's lag rules from [`kafka::lag`].

pub mod client;
pub mod config;
pub mod direct;
pub mod entry;
pub mod error;
pub mod exposition;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod poller;
pub mod prom;
pub mod quantile;
pub mod reading;
pub mod registry;
pub mod scrape;
pub mod service;
pub mod telemetry;
pub mod trigger;

use std::future::Future;
use std::sync::Arc;

use contract::listening;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

pub use config::Config;
pub use error::ScalerError;

use crate::client::Clients;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::ScalerService;
use keda_proto::external_scaler_server::ExternalScalerServer;

/// Runs the scaler on already-bound listeners until `shutdown` completes, then drains: readiness and gRPC health go
/// NOT_SERVING at once, streams end, in-flight RPCs finish within `--shutdown-grace`.
/// Logs `listening` with kind `grpc` and kind `http` once serving.
pub async fn serve(
    grpc: TcpListener,
    http: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ScalerError> {
    config.validate()?;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let grace = config.shutdown_grace;
    let token = CancellationToken::new();
    let clients = Clients::new(config.source_timeout, config.ca_file.as_deref())?;
    let metrics = Arc::new(Metrics::new());
    let registry = Registry::new(Arc::new(config), metrics.clone(), clients, token.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    let scaler_service = ExternalScalerServer::new(ScalerService::new(
        registry.clone(),
        metrics.clone(),
        token.clone(),
    ));

    let grpc_token = token.clone();
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(scaler_service)
        // Nagle would hold small responses back for an ACK; tonic ignores its own nodelay default with custom incoming.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            async move { grpc_token.cancelled().await },
        );
    let router = http::router(registry, metrics, token.clone());
    let http_server =
        axum::serve(http, router).with_graceful_shutdown(token.clone().cancelled_owned());

    let mut grpc_task = tokio::spawn(grpc_server);
    let mut http_task = tokio::spawn(async move { http_server.await });
    tracing::info!(kind = listening::kind::GRPC, addr = %grpc_addr, "{}", listening::MESSAGE);
    tracing::info!(kind = listening::kind::HTTP, addr = %http_addr, "{}", listening::MESSAGE);

    let shutdown_token = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        shutdown_token.cancel();
    });

    // A server that stops on its own before shutdown is a failure; report it. `biased`: the servers finish only after
    // the token is cancelled, so checking the token first never mistakes a graceful stop for a failure.
    let early = tokio::select! {
        biased;
        _ = token.cancelled() => None,
        result = &mut grpc_task => Some(("grpc", result.map(|r| r.map_err(ScalerError::from)))),
        result = &mut http_task => Some(("http", result.map(|r| r.map_err(ScalerError::from)))),
    };
    token.cancel();
    health_reporter
        .set_not_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    if let Some((kind, result)) = early {
        tracing::error!(kind, "server stopped unexpectedly");
        return match result {
            Ok(Ok(())) => Err(ScalerError::Io(std::io::Error::other(format!(
                "{kind} server stopped"
            )))),
            Ok(Err(error)) => Err(error),
            Err(join) => Err(ScalerError::Io(std::io::Error::other(join.to_string()))),
        };
    }
    tracing::info!(grace = ?grace, "shutting down: draining");
    let drained = tokio::time::timeout(grace, async {
        let grpc_result = (&mut grpc_task).await;
        let http_result = (&mut http_task).await;
        (grpc_result, http_result)
    })
    .await;
    match drained {
        Ok((grpc_result, http_result)) => {
            if let Ok(Err(error)) = grpc_result {
                return Err(error.into());
            }
            if let Ok(Err(error)) = http_result {
                return Err(error.into());
            }
            tracing::info!("stopped");
        }
        Err(_) => {
            grpc_task.abort();
            http_task.abort();
            tracing::warn!(grace = ?grace, "in-flight work did not drain within the grace period; stopped anyway");
        }
    }
    Ok(())
}
