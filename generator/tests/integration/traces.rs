//! Traces start at the generator: sampled requests carry a W3C `traceparent`, and their client spans reach a real
//! OTLP/gRPC receiver (testkit's sink: the collector's TraceService from opentelemetry-proto) with the same trace and
//! span ids.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use generator::profile::RequestSpec;
use generator::trace::Tracing;
use generator::{Profile, RunOptions, TargetSet};
use testkit::otlp::{OtlpSink, SpanKind};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_carry_traceparent_and_their_spans_reach_the_receiver() {
    let _cpu = common::shared().await;
    let sink = OtlpSink::start().await.expect("OTLP sink starts");
    let otlp = sink.endpoint().to_string();
    // Target that records the traceparent it receives.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    async fn handler(
        State(seen): State<Arc<Mutex<Vec<String>>>>,
        headers: HeaderMap,
    ) -> &'static str {
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            seen.lock().unwrap().push(tp.to_string());
        }
        "ok"
    }
    let app = Router::new()
        .route("/work", get(handler))
        .with_state(seen.clone());
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", target.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(target, app).await });

    let tracing = Arc::new(Tracing::with_endpoint(1.0, &otlp).unwrap());
    let profile = Profile::constant(
        20.0,
        Duration::from_secs(1),
        RequestSpec::new("GET", "/work", None),
    );
    let opts = RunOptions {
        tracing: Some(tracing.clone()),
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 20);
    let t = tracing.clone();
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .unwrap();

    let headers = seen.lock().unwrap().clone();
    assert_eq!(headers.len(), 20, "every request sampled at 1.0");
    let spans = sink
        .wait_for_count(20, Duration::from_secs(10))
        .await
        .unwrap_or_else(|timeout| panic!("{timeout}"));
    assert_eq!(spans.len(), 20);
    for received in &spans {
        let span = &received.span;
        assert_eq!(span.name, "GET /work");
        assert_eq!(span.kind, SpanKind::Client as i32, "SPAN_KIND_CLIENT");
        assert_eq!(received.service_name.as_deref(), Some("generator"));
        let tp = format!("00-{}-{}-01", received.trace_id(), received.span_id());
        assert!(headers.contains(&tp), "{tp} not sent; sent {headers:?}");
        assert_eq!(
            received.int_attribute("http.response.status_code"),
            Some(200),
            "{:?}",
            span.attributes
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_the_sample_share_still_gets_traceparent() {
    let _cpu = common::shared().await;
    let seen: Arc<Mutex<u64>> = Arc::default();
    async fn handler(State(seen): State<Arc<Mutex<u64>>>, headers: HeaderMap) -> &'static str {
        if headers.contains_key("traceparent") {
            *seen.lock().unwrap() += 1;
        }
        "ok"
    }
    let app = Router::new()
        .route("/", get(handler))
        .with_state(seen.clone());
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", target.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(target, app).await });
    let tracing = Arc::new(Tracing::propagate_only(0.2).unwrap());
    let profile = Profile::constant(
        1000.0,
        Duration::from_secs(2),
        RequestSpec::new("GET", "/", None),
    );
    let opts = RunOptions {
        tracing: Some(tracing),
        ..RunOptions::default()
    };
    let report = common::run_load(
        profile,
        TargetSet::single(&url).unwrap(),
        opts,
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 2000);
    let n = *seen.lock().unwrap();
    assert!((300..=500).contains(&n), "{n} of 2000 sampled at 0.2");
}
