//! Traces reach a real OTLP/gRPC receiver (a tonic TraceService server from opentelemetry-proto) from a real consumer
//! process: span names, kinds and HTTP attributes, children for queue wait and work, a caller's `traceparent`
//! honoured, async jobs linked to the request that queued them, no exporter feedback spans, and logs carrying the
//! trace id.

use std::time::Duration;

use serde_json::Value;
use testkit::Spawned;
use testkit::otlp::{OtlpSink, ReceivedSpan, SpanKind, hex, int_attribute, string_attribute};

#[tokio::test]
async fn spans_reach_a_real_otlp_receiver_with_http_conventions_parents_and_links() {
    let _machine = crate::common::shared_machine().await;
    let sink = OtlpSink::start().await.expect("OTLP sink starts");
    let mut consumer = Spawned::start(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pod-name",
            "otlp-pod",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &["http"],
    )
    .await
    .expect("consumer starts");
    let base = consumer.url("http");
    let client = reqwest::Client::new();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sync_parent = "00f067aa0ba902b7";
    let async_parent = "00f067aa0ba902b8";
    let sync = client
        .post(format!("{base}/load/io"))
        .header("traceparent", format!("00-{trace_id}-{sync_parent}-01"))
        .body(r#"{"delay_ms": 20}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200);
    let accepted: Value = client
        .post(format!("{base}/load/cpu"))
        .header("traceparent", format!("00-{trace_id}-{async_parent}-01"))
        .body(r#"{"duration_ms": 20, "mode": "async"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    testkit::poll_json(
        &client,
        &format!("{base}/jobs/{job_id}"),
        Duration::from_secs(10),
        |job| job["state"] == "done",
    )
    .await
    .expect("async job done");
    let untraced = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(untraced.status(), 200);

    // Shutdown flushes whatever the batch processor still holds.
    consumer.signal(libc::SIGTERM);
    let exit = consumer
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(exit.code(), Some(0));

    // The exit flushed every span before the process ended; the sink stored each export before answering it.
    let expected = [
        "POST /load/io",
        "POST /load/cpu",
        "GET /jobs/{id}",
        "GET /health",
        "queue wait",
        "work",
        "job cpu",
    ];
    let spans: Vec<ReceivedSpan> = sink
        .wait_for(Duration::from_secs(5), |spans| {
            expected
                .iter()
                .all(|name| spans.iter().any(|span| span.span.name == *name))
        })
        .await
        .expect("every expected span arrives");
    let service_names: Vec<Option<String>> =
        spans.iter().map(|span| span.service_name.clone()).collect();
    assert!(
        service_names
            .iter()
            .all(|name| name.as_deref() == Some("consumer")),
        "{service_names:?}"
    );
    let names: Vec<&str> = spans.iter().map(|span| span.span.name.as_str()).collect();
    assert!(
        names.iter().all(|name| expected.contains(name)),
        "no exporter feedback or stray spans: {names:?}"
    );

    let find = |name: &str, parent: Option<&[u8]>| {
        spans
            .iter()
            .map(|received| &received.span)
            .find(|span| {
                span.name == name && parent.is_none_or(|parent| span.parent_span_id == parent)
            })
            .unwrap_or_else(|| panic!("no span {name} (parent {parent:?}) in {names:?}"))
    };

    // The sync request: a server span continuing the caller's trace, with queue-wait and work children.
    let server = find("POST /load/io", None);
    assert_eq!(hex(&server.trace_id), trace_id, "traceparent honoured");
    assert_eq!(
        hex(&server.parent_span_id),
        sync_parent,
        "the caller's span is the parent"
    );
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        string_attribute(&server.attributes, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        string_attribute(&server.attributes, "http.route").as_deref(),
        Some("/load/io")
    );
    assert_eq!(
        int_attribute(&server.attributes, "http.response.status_code"),
        Some(200),
        "{:?}",
        server.attributes
    );
    for child in ["queue wait", "work"] {
        let span = find(child, Some(&server.span_id));
        assert_eq!(span.trace_id, server.trace_id);
    }

    // The async request: its server span answers 202; the job runs in its own trace, linked to that span.
    let queued_by = find("POST /load/cpu", None);
    assert_eq!(hex(&queued_by.parent_span_id), async_parent);
    assert_eq!(
        int_attribute(&queued_by.attributes, "http.response.status_code"),
        Some(202)
    );
    let job = find("job cpu", None);
    assert!(job.parent_span_id.is_empty(), "the job span is a root");
    assert!(
        job.links
            .iter()
            .any(|link| link.trace_id == queued_by.trace_id && link.span_id == queued_by.span_id),
        "the job links to the request that queued it: {:?}",
        job.links
    );
    assert_eq!(
        string_attribute(&job.attributes, "job.id").as_deref(),
        Some(job_id.as_str())
    );
    for child in ["queue wait", "work"] {
        find(child, Some(&job.span_id));
    }
    let health = find("GET /health", None);
    assert_ne!(
        hex(&health.trace_id),
        trace_id,
        "a request without traceparent starts a new trace"
    );

    // Logs carry the trace id of the span they were written in.
    let job_trace = hex(&job.trace_id);
    let output = consumer.output_lines();
    let logged = output
        .iter()
        .find(|line| line.contains("job finished"))
        .expect("job log line");
    let log: Value = serde_json::from_str(logged).expect("JSON log line");
    assert!(
        log.to_string().contains(&job_trace),
        "log line carries trace id {job_trace}: {log}"
    );
}
