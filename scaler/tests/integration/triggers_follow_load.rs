//! A real Prometheus scrapes a real consumer; load is driven into the consumer and GetMetrics / IsActive are watched
//! following it for request_rate, latency, backlog and allocator_pressure (plus the `query` trigger) — and the same
//! triggers through the direct source, which computes rates and quantiles itself.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{Load, Scaler, consumer, eventually, meta, metrics_request, scaled_object};
use keda_proto::ScaledObjectRef;
use keda_proto::external_scaler_client::ExternalScalerClient;
use serde_json::json;
use tonic::transport::Channel;

struct Watched {
    label: &'static str,
    reference: ScaledObjectRef,
    metric_name: String,
}

async fn register(
    client: &mut ExternalScalerClient<Channel>,
    label: &'static str,
    source: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> Watched {
    let mut metadata: HashMap<String, String> = meta(pairs);
    metadata.extend(meta(source));
    let reference = scaled_object(label, metadata);
    let spec = client
        .get_metric_spec(reference.clone())
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"))
        .into_inner();
    Watched {
        label,
        reference,
        metric_name: spec.metric_specs[0].metric_name.clone(),
    }
}

async fn read(
    client: &mut ExternalScalerClient<Channel>,
    watched: &Watched,
) -> Result<(f64, bool), String> {
    let value = client
        .get_metrics(metrics_request(&watched.reference, &watched.metric_name))
        .await
        .map_err(|s| format!("{}: GetMetrics {s}", watched.label))?
        .into_inner()
        .metric_values[0]
        .metric_value_float;
    let active = client
        .is_active(watched.reference.clone())
        .await
        .map_err(|s| format!("{}: IsActive {s}", watched.label))?
        .into_inner()
        .result;
    Ok((value, active))
}

/// Waits until the trigger reads a value accepted by `accept` with the expected activation.
async fn until(
    client: &ExternalScalerClient<Channel>,
    watched: &Watched,
    active: bool,
    timeout: Duration,
    accept: impl Fn(f64) -> bool,
) -> f64 {
    eventually(
        &format!("{} active={active}", watched.label),
        timeout,
        || {
            let mut client = client.clone();
            let accepted = |v: f64| accept(v);
            async move {
                let (value, is_active) = read(&mut client, watched).await?;
                if is_active == active && accepted(value) {
                    Ok(value)
                } else {
                    Err(format!("value {value}, active {is_active}"))
                }
            }
        },
    )
    .await
}

/// Drives the four kinds of load and checks every built-in trigger follows, on the given source.
async fn triggers_follow_load(
    scaler: &Scaler,
    consumer_url: &str,
    source: &[(&str, &str)],
    timeout: Duration,
) {
    let mut client = scaler.client().await;
    let rate = register(
        &mut client,
        "rate",
        source,
        &[("trigger", "request_rate"), ("window", "4s")],
    )
    .await;
    let latency = register(
        &mut client,
        "latency",
        source,
        &[
            ("trigger", "latency"),
            ("route", "/load/io"),
            ("quantile", "0.9"),
            ("window", "4s"),
            ("target", "0.5"),
        ],
    )
    .await;
    let backlog = register(
        &mut client,
        "backlog",
        source,
        &[("trigger", "backlog"), ("target", "2")],
    )
    .await;
    let alloc = register(
        &mut client,
        "alloc",
        source,
        &[
            ("trigger", "allocator_pressure"),
            ("target", "50e6"),
            ("activationTarget", "20e6"),
            ("window", "4s"),
        ],
    )
    .await;

    // Idle: no user traffic, so no request rate and no backlog (probes and scrapes never count).
    until(&client, &rate, false, timeout, |v| v == 0.0).await;
    until(&client, &backlog, false, timeout, |v| v == 0.0).await;
    until(&client, &latency, false, timeout, |v| v == 0.0).await;
    let (idle_alloc, _) = read(&mut client, &alloc).await.unwrap();
    assert!(idle_alloc < 20e6, "idle allocation rate {idle_alloc} B/s");

    // Sync I/O requests of 200 ms (latency), async 1.5 s jobs (backlog), 8 MiB allocations (allocator pressure).
    let io = Load::start(
        format!("{consumer_url}/load/io"),
        json!({"delay_ms": 200}),
        3,
    );
    // Async submissions answer at once on the same route: paced so they do not drown the sync latency.
    let jobs = Load::paced(
        format!("{consumer_url}/load/io"),
        json!({"delay_ms": 1500, "mode": "async"}),
        1,
        Duration::from_millis(400),
    );
    let memory = Load::start(
        format!("{consumer_url}/load/memory"),
        json!({"size_mb": 8, "duration_ms": 1}),
        2,
    );

    let busy_rate = until(&client, &rate, true, timeout, |v| v > 1.0).await;
    let busy_latency = until(&client, &latency, true, timeout, |v| {
        (0.1..=5.0).contains(&v)
    })
    .await;
    let busy_backlog = until(&client, &backlog, true, timeout, |v| v >= 1.0).await;
    let busy_alloc = until(&client, &alloc, true, timeout, |v| v > 20e6).await;
    eprintln!(
        "busy: rate {busy_rate:.1}/s, p90 {busy_latency:.3}s, backlog {busy_backlog}, alloc {busy_alloc:.0} B/s"
    );

    let explain = scaler.explain().await;
    let triggers: Vec<&serde_json::Value> = explain["scaled_objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["triggers"].as_array().unwrap())
        .collect();
    assert_eq!(triggers.len(), 4, "{explain}");
    let latency_explained = triggers.iter().find(|t| t["kind"] == "latency").unwrap();
    assert_eq!(latency_explained["metric_type"], "Value");
    assert_eq!(
        latency_explained["current_replicas"], 1,
        "{latency_explained}"
    );

    memory.stop().await;
    io.stop().await;
    jobs.stop().await;
    // After the load: the rate falls back to 0 and, after the window and the hysteresis, the trigger deactivates.
    until(
        &client,
        &rate,
        false,
        timeout + Duration::from_secs(6),
        |v| v == 0.0,
    )
    .await;
}

#[tokio::test]
async fn prometheus_source_triggers_follow_load() {
    let consumer = consumer(0).await;
    let prometheus =
        testkit::Prometheus::start(&[consumer.addr("http")], Duration::from_millis(500))
            .await
            .expect("prometheus starts (scripts/setup.sh installs it)");
    let scaler = Scaler::start(&[
        "--prometheus-url",
        &prometheus.url,
        "--prometheus-poll-interval",
        "500ms",
    ])
    .await;
    // No serverAddress: the triggers use --prometheus-url.
    triggers_follow_load(&scaler, &consumer.url("http"), &[], Duration::from_secs(20)).await;

    // The query trigger runs the user's PromQL; more than one series is a clear error, not a guess.
    let mut client = scaler.client().await;
    let executors = register(
        &mut client,
        "query",
        &[("serverAddress", &prometheus.url)],
        &[
            ("trigger", "query"),
            ("query", "sum(consumer_executors)"),
            ("target", "1"),
        ],
    )
    .await;
    let value = until(&client, &executors, true, Duration::from_secs(10), |v| {
        v > 0.0
    })
    .await;
    assert_eq!(value, 8.0, "the consumer runs with --executors 8");
    let ambiguous = register(
        &mut client,
        "ambiguous",
        &[],
        &[
            ("trigger", "query"),
            ("query", "consumer_job_duration_seconds_count"),
            ("target", "1"),
        ],
    )
    .await;
    let status = client
        .get_metrics(metrics_request(
            &ambiguous.reference,
            &ambiguous.metric_name,
        ))
        .await
        .expect_err("several series cannot be a trigger value");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("series"), "{}", status.message());
    scaler.shutdown().await;
}

#[tokio::test]
async fn direct_source_triggers_follow_load() {
    let consumer = consumer(0).await;
    let scaler = Scaler::start(&["--direct-poll-interval", "500ms"]).await;
    let targets = format!("{}/metrics", consumer.url("http"));
    triggers_follow_load(
        &scaler,
        &consumer.url("http"),
        &[("targets", &targets)],
        Duration::from_secs(15),
    )
    .await;
    scaler.shutdown().await;
}

#[tokio::test]
async fn direct_source_follows_pods_behind_a_dns_name() {
    // `localhost` resolves to 127.0.0.1 (and maybe ::1): the DNS form scrapes every address it resolves to.
    let consumer = consumer(0).await;
    let port = consumer.addr("http").port().to_string();
    let scaler = Scaler::start(&["--direct-poll-interval", "300ms"]).await;
    let mut client = scaler.client().await;
    let targets = format!("localhost:{port}");
    let backlog = register(
        &mut client,
        "dns",
        &[("targets", &targets)],
        &[("trigger", "backlog"), ("target", "1")],
    )
    .await;
    let value = until(&client, &backlog, false, Duration::from_secs(10), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(value, 0.0);
    let explain = scaler.explain().await;
    let source = &explain["sources"][0];
    assert_eq!(source["kind"], "direct");
    assert!(source["pods"].as_u64().unwrap() >= 1, "{source}");
    scaler.shutdown().await;
}
