//! https sources, end to end: a real TLS server on 127.0.0.1 (a certificate issued in the test by a CA generated in
//! the test) answers the Prometheus API and serves a consumer-like `/metrics`. With `--ca-file` the scaler reads both
//! through GetMetrics (`serverAddress`, `targets` and `--prometheus-url`); without it the certificate is refused and
//! every RPC answers UNAVAILABLE naming the cause, which `/explain` shows too; `unsafeSsl: "true"` skips verification.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use contract::metrics::consumer::{JOBS_QUEUED, JOBS_RUNNING, PROCESS_START_TIME_SECONDS};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tonic::Code;

use crate::common::{Scaler, meta, metrics_request, scaled_object};

/// The value the fake Prometheus answers for every query.
const QUERY_VALUE: f64 = 42.0;

/// A CA and a server certificate for 127.0.0.1 it issued.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca_pem: ca.as_ref().pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

/// An https server on 127.0.0.1:0 with a Prometheus-like `/api/v1/query` and a consumer-like `/metrics`.
struct TlsServer {
    addr: SocketAddr,
    /// Requests answered (after a completed handshake).
    served: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsServer {
    async fn start(pki: &Pki) -> TlsServer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = Router::new()
            .route(
                "/api/v1/query",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        axum::Json(serde_json::json!({
                            "status": "success",
                            "data": {"resultType": "vector",
                                     "result": [{"metric": {}, "value": [0, QUERY_VALUE.to_string()]}]}
                        }))
                    }
                }),
            )
            .route(
                "/metrics",
                get(|| async {
                    format!(
                        "{} 1\n{} 3\n{} 2\n",
                        PROCESS_START_TIME_SECONDS.name, JOBS_QUEUED.name, JOBS_RUNNING.name
                    )
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate aborts the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        TlsServer { addr, served, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn write_ca(dir: &tempfile::TempDir, pki: &Pki) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

#[tokio::test]
async fn https_sources_with_the_ca_file_work_through_get_metrics() {
    let pki = pki();
    let server = TlsServer::start(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(&dir, &pki);
    let prometheus = server.url("");
    let scaler = Scaler::start(&[
        "--ca-file",
        ca.to_str().unwrap(),
        "--prometheus-url",
        &prometheus,
        "--poll-interval",
        "200ms",
    ])
    .await;
    let mut client = scaler.client().await;

    let cases = [
        // serverAddress
        (
            "query",
            meta(&[
                ("trigger", "query"),
                ("query", "lab_queue_depth"),
                ("target", "10"),
                ("serverAddress", &prometheus),
            ]),
            QUERY_VALUE,
        ),
        // --prometheus-url (no source in the metadata)
        (
            "default",
            meta(&[
                ("trigger", "query"),
                ("query", "lab_queue_depth"),
                ("target", "10"),
            ]),
            QUERY_VALUE,
        ),
        // targets: the pods' /metrics over https (3 queued + 2 running)
        (
            "pods",
            meta(&[
                ("trigger", "backlog"),
                ("target", "1"),
                ("targets", &server.url("/metrics")),
            ]),
            5.0,
        ),
    ];
    for (name, metadata, expected) in cases {
        let reference = scaled_object(name, metadata);
        let spec = client
            .get_metric_spec(reference.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        let metric_name = &spec.metric_specs[0].metric_name;
        let value = client
            .get_metrics(metrics_request(&reference, metric_name))
            .await
            .unwrap_or_else(|e| panic!("{name}: GetMetrics over https: {e}"))
            .into_inner();
        assert_eq!(
            value.metric_values[0].metric_value_float, expected,
            "{name}"
        );
    }
    assert!(server.served.load(Ordering::SeqCst) > 0);
    let explain = scaler.explained().await;
    for object in explain.scaled_objects {
        for trigger in object.triggers {
            assert_eq!(trigger.error, None, "{trigger:?}");
        }
    }
    scaler.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_with_the_cause_unless_unsafe_ssl() {
    let pki = pki();
    let server = TlsServer::start(&pki).await;
    let prometheus = server.url("");
    let scaler = Scaler::start(&["--poll-interval", "200ms"]).await;
    let mut client = scaler.client().await;

    for (name, source) in [
        ("prom", ("serverAddress", prometheus.clone())),
        ("pods", ("targets", server.url("/metrics"))),
    ] {
        let reference = scaled_object(
            name,
            meta(&[
                ("trigger", if name == "prom" { "query" } else { "backlog" }),
                ("query", "lab_queue_depth"),
                ("target", "10"),
                (source.0, &source.1),
            ])
            .into_iter()
            .filter(|(k, _)| name == "prom" || k != "query")
            .collect(),
        );
        let spec = client
            .get_metric_spec(reference.clone())
            .await
            .unwrap()
            .into_inner();
        let status = client
            .get_metrics(metrics_request(
                &reference,
                &spec.metric_specs[0].metric_name,
            ))
            .await
            .expect_err("an untrusted certificate must not give a value");
        eprintln!("{name}: {}", status.message());
        assert_eq!(status.code(), Code::Unavailable, "{name}: {status:?}");
        assert!(
            status.message().contains("certificate"),
            "{name}: the cause is named: {}",
            status.message()
        );
        let active = client.is_active(reference).await.expect_err("no value");
        assert_eq!(active.code(), Code::Unavailable);
    }
    let explain = scaler.explained().await;
    assert_eq!(explain.scaled_objects.len(), 2);
    for object in &explain.scaled_objects {
        let trigger = &object.triggers[0];
        assert_eq!(trigger.value, None);
        let error = trigger.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("certificate"),
            "/explain shows the cause: {trigger:?}"
        );
    }
    for source in &explain.sources {
        assert!(
            source
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("certificate")),
            "{source:?}"
        );
    }
    assert_eq!(
        server.served.load(Ordering::SeqCst),
        0,
        "no query got past the handshake"
    );

    // unsafeSsl: "true" skips verification, as in KEDA's Prometheus trigger; a separate source, so the verified one
    // keeps failing.
    let reference = scaled_object(
        "unsafe",
        meta(&[
            ("trigger", "query"),
            ("query", "lab_queue_depth"),
            ("target", "10"),
            ("serverAddress", &prometheus),
            ("unsafeSsl", "true"),
        ]),
    );
    let spec = client
        .get_metric_spec(reference.clone())
        .await
        .unwrap()
        .into_inner();
    let value = client
        .get_metrics(metrics_request(
            &reference,
            &spec.metric_specs[0].metric_name,
        ))
        .await
        .expect("unsafeSsl reads the value")
        .into_inner();
    assert_eq!(value.metric_values[0].metric_value_float, QUERY_VALUE);
    let explain = scaler.explained().await;
    assert!(
        explain
            .sources
            .iter()
            .any(|s| s.source.ends_with("(unsafeSsl)") && s.last_error.is_none()),
        "{:?}",
        explain.sources
    );
    scaler.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_the_scaler_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for path in [not_pem, dir.path().join("missing.pem")] {
        let config = <scaler::Config as clap::Parser>::try_parse_from([
            "scaler",
            "--ca-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = tokio::time::timeout(
            Duration::from_secs(5),
            scaler::serve(grpc, http, config, std::future::pending()),
        )
        .await
        .expect("refused at once")
        .expect_err("a bad --ca-file is refused");
        let text = error.to_string();
        assert!(text.contains("--ca-file"), "{text}");
    }
}
