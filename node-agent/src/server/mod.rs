//! The kubelet's API on the node address, as the API server and metrics-server call it: HTTPS with the node's
//! serving certificate, client certificates from the cluster CA or bearer tokens (see [`auth`]), and
//! `GET /containerLogs/{namespace}/{pod}/{container}` (what `kubectl logs` reaches through the API server),
//! `GET /metrics/resource` (container and pod CPU and memory from the cgroups, for metrics-server), `GET /pods`,
//! and `GET /healthz`. Errors are the kubelet's plain-text ones with their status codes.

pub mod auth;
pub mod logs;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::pods::context::Agent;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what} {path}: {why}")]
    Pem {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let err = |why: String| ServerError::Pem {
        what: "certificate",
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))
}

fn read_pem_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let err = |why: String| ServerError::Pem {
        what: "key",
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no private key in the file".into()))
}

/// The state every handler sees.
#[derive(Clone)]
pub struct Api {
    pub agent: Arc<Agent>,
    pub gate: auth::Gate,
}

/// The caller named by the connection's client certificate.
#[derive(Clone)]
struct CertUser(Option<auth::User>);

/// Binds the kubelet port and returns the serving task.
pub async fn serve(
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, ServerError> {
    let args = &agent.config.args;
    let certs = read_pem_certs(&args.tls_cert_file)?;
    let key = read_pem_key(&args.tls_private_key_file)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_pem_certs(&args.client_ca_file)? {
        roots.add(ca).map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let addr = SocketAddr::from((args.node_ip, args.kubelet_port));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    tracing::info!(message = "listening", kind = "https", addr = %addr);
    let api = Api {
        gate: auth::Gate::new(agent.client.clone(), agent.config.args.node_name.clone()),
        agent,
    };
    let router = router(api);
    Ok(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("kubelet API accept: {e}");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            let conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(%peer, "kubelet API handshake: {e}");
                        return;
                    }
                };
                let user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| auth::user_of_certificate(c));
                let service =
                    TowerToHyperService::new(router.layer(axum::Extension(CertUser(user))));
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::select! {
                    result = conn => if let Err(e) = result { tracing::debug!(%peer, "kubelet API connection: {e}") },
                    _ = conn_shutdown.cancelled() => {}
                }
            });
        }
    })
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/metrics/resource", get(metrics::resource))
        .route("/pods", get(metrics::pods))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(middleware::from_fn_with_state(api.clone(), gate))
        .with_state(api)
}

/// Authenticates and authorizes every request but `/healthz`.
async fn gate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path == "/healthz" {
        return next.run(request).await;
    }
    let cert = request
        .extensions()
        .get::<CertUser>()
        .and_then(|c| c.0.clone());
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    match api.gate.check(cert, bearer.as_deref(), &path).await {
        Ok(_) => next.run(request).await,
        Err(auth::Refused::Unauthorized) => {
            (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response()
        }
        Err(auth::Refused::Forbidden(why)) => {
            (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
        }
        Err(auth::Refused::Unavailable(why)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot check the request: {why}\n"),
        )
            .into_response(),
    }
}
