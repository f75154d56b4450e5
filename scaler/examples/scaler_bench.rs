//! The scaler benchmark driver (run by `bench/scaler/run.sh`): spawns a real consumer, a real Prometheus and the scaler
//! binary on 127.0.0.1 and prints, in one run:
//!   1. GetMetrics latency p50/p99 at 1, 16 and 256 concurrent callers, next to the peer: the same PromQL sent to
//!      Prometheus's /api/v1/query (what KEDA's built-in Prometheus trigger does per call), as a ratio;
//!   2. activation latency, load start -> StreamIsActive true, direct source vs Prometheus source, same runs;
//!   3. source requests/s while 100 ScaledObjects are polled by KEDA-like callers, vs one request per call (the
//!      built-in trigger), per source kind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use keda_proto::external_scaler_client::ExternalScalerClient;
use keda_proto::{GetMetricsRequest, ScaledObjectRef};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

struct Options {
    scaler: PathBuf,
    consumer: PathBuf,
    seconds: u64,
    activation_runs: usize,
    pin_cpu: Option<String>,
}

fn options() -> Options {
    let mut opts = Options {
        scaler: testkit::bin_path("scaler"),
        consumer: testkit::bin_path("consumer"),
        seconds: 5,
        activation_runs: 3,
        pin_cpu: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--scaler" => opts.scaler = value.into(),
            "--consumer" => opts.consumer = value.into(),
            "--seconds" => opts.seconds = value.parse().expect("--seconds N"),
            "--activation-runs" => {
                opts.activation_runs = value.parse().expect("--activation-runs N")
            }
            "--pin-scaler-cpu" => opts.pin_cpu = Some(value),
            other => panic!(
                "unknown argument {other}; known: --scaler PATH --consumer PATH --seconds N --activation-runs N --pin-scaler-cpu CPU"
            ),
        }
        i += 2;
    }
    opts
}

fn meta(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn reference(name: &str, metadata: &std::collections::HashMap<String, String>) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.into(),
        namespace: "bench".into(),
        scaler_metadata: metadata.clone(),
    }
}

async fn connect(url: &str) -> ExternalScalerClient<Channel> {
    ExternalScalerClient::new(
        Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

/// Runs `callers` loops of `call` for `seconds`; returns (histogram in µs, calls). Closed loop (next call when the
/// previous answers) without `pace`; with `pace`, each caller starts a call every `pace` (a fixed offered load below
/// saturation, as KEDA's periodic calls are).
async fn closed_loop<F, Fut>(
    callers: usize,
    seconds: u64,
    pace: Option<Duration>,
    call: F,
) -> (Histogram<u64>, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut ticker = pace.map(|pace| {
                    let mut ticker = tokio::time::interval(pace);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    ticker
                });
                while Instant::now() < deadline {
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    // Timed from the actual send: tokio's timer fires up to 1 ms late, which is the driver's error, not
                    // the scaler's. Missed ticks are sent back to back (Burst), so a stall still shows as queueing.
                    let started = Instant::now();
                    let ok = call(i).await;
                    assert!(ok, "a benchmark call failed");
                    histogram.saturating_record(started.elapsed().as_micros() as u64);
                }
                histogram
            })
        })
        .collect();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        total.add(task.await.unwrap()).unwrap();
    }
    let calls = total.len();
    (total, calls)
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

struct Load {
    token: CancellationToken,
}

impl Load {
    fn start(url: String) -> Load {
        let token = CancellationToken::new();
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let (token, client, url) = (token.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                while !token.is_cancelled() {
                    let _ = client
                        .post(&url)
                        .json(&serde_json::json!({"duration_ms": 5}))
                        .send()
                        .await;
                }
            });
        }
        Load { token }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn metric_sum(url: &str, prefix: &str) -> f64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = options();
    let consumer = testkit::Spawned::start(
        &opts.consumer,
        &["--host", "127.0.0.1", "--port", "0"],
        &[],
        &["http"],
    )
    .await
    .expect("consumer");
    // A second consumer that Prometheus does not scrape: its /metrics counter measures the scaler's scrapes alone.
    let consumer_direct = testkit::Spawned::start(
        &opts.consumer,
        &["--host", "127.0.0.1", "--port", "0"],
        &[],
        &["http"],
    )
    .await
    .expect("consumer");
    let prometheus = testkit::Prometheus::start(&[consumer.addr("http")], Duration::from_secs(1))
        .await
        .expect("prometheus");
    let scaler_bin = opts.scaler.to_string_lossy().into_owned();
    let mut scaler_args: Vec<&str> = vec![
        "--host",
        "127.0.0.1",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--prometheus-url",
        &prometheus.url,
    ];
    let program = match &opts.pin_cpu {
        Some(cpu) => {
            scaler_args.splice(0..0, ["-c", cpu.as_str(), scaler_bin.as_str()]);
            "taskset".to_string()
        }
        None => scaler_bin.clone(),
    };
    let scaler = testkit::Spawned::start(&program, &scaler_args, &[], &["grpc", "http"])
        .await
        .expect("scaler");
    let grpc_url = scaler.url("grpc");
    println!(
        "setup: scaler {} (poll: direct 1s, prometheus 5s), consumer x2, prometheus {} scraping every 1s",
        opts.scaler.display(),
        prometheus.url
    );

    // 1. GetMetrics latency vs a Prometheus instant query of the same PromQL.
    let direct_meta = meta(&[
        ("trigger", "request_rate"),
        ("targets", &format!("{}/metrics", consumer.url("http"))),
    ]);
    let prom_meta = meta(&[("trigger", "request_rate")]);
    let mut client = connect(&grpc_url).await;
    let spec = client
        .get_metric_spec(reference("latency", &direct_meta))
        .await
        .unwrap()
        .into_inner();
    let metric_name = spec.metric_specs[0].metric_name.clone();
    let promql = scaler::trigger::TriggerSpec::from_metadata(&prom_meta)
        .unwrap()
        .promql();
    // Warm the cache (first value needs two scrapes).
    for _ in 0..50 {
        let request = GetMetricsRequest {
            scaled_object_ref: Some(reference("latency", &direct_meta)),
            metric_name: metric_name.clone(),
        };
        if client.get_metrics(request).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "\n## 1. GetMetrics latency ({}s per level; peer = Prometheus /api/v1/query `{promql}`)",
        opts.seconds
    );
    println!(
        "| callers | scaler p50 ms | scaler p99 ms | scaler calls/s | prometheus p50 ms | prometheus p99 ms | prometheus q/s | p99 ratio prom/scaler |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let connections = 8;
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(connect(&grpc_url).await);
    }
    let channels = Arc::new(channels);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    for (callers, pace) in [
        (1usize, None),
        (16, None),
        (256, None),
        (16, Some(Duration::from_millis(4))),
    ] {
        let (channels_c, meta_c, name_c) =
            (channels.clone(), direct_meta.clone(), metric_name.clone());
        let (scaler_hist, scaler_calls) = closed_loop(callers, opts.seconds, pace, move |i| {
            let mut client = channels_c[i % channels_c.len()].clone();
            let request = GetMetricsRequest {
                scaled_object_ref: Some(reference("latency", &meta_c)),
                metric_name: name_c.clone(),
            };
            async move { client.get_metrics(request).await.is_ok() }
        })
        .await;
        let (http_c, url_c, q_c) = (
            http.clone(),
            format!("{}/api/v1/query", prometheus.url),
            promql.clone(),
        );
        let (prom_hist, prom_calls) = closed_loop(callers, opts.seconds, pace, move |_| {
            let request = http_c.get(&url_c).query(&[("query", q_c.as_str())]).send();
            async move {
                match request.await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
        println!(
            "| {callers}{} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.0} | {:.1} |",
            if pace.is_some() {
                " paced, 250 calls/s each"
            } else {
                ""
            },
            ms(&scaler_hist, 0.5),
            ms(&scaler_hist, 0.99),
            scaler_calls as f64 / opts.seconds as f64,
            ms(&prom_hist, 0.5),
            ms(&prom_hist, 0.99),
            prom_calls as f64 / opts.seconds as f64,
            ms(&prom_hist, 0.99) / ms(&scaler_hist, 0.99).max(0.001),
        );
    }

    // 2. Activation latency: both sources watched in the same runs.
    println!(
        "\n## 2. Activation latency: load start -> StreamIsActive true ({} runs)",
        opts.activation_runs
    );
    let activation_direct = meta(&[
        ("trigger", "request_rate"),
        ("window", "5s"),
        ("targets", &format!("{}/metrics", consumer.url("http"))),
    ]);
    let activation_prom = meta(&[("trigger", "request_rate"), ("window", "5s")]);
    let mut direct_times = Vec::new();
    let mut prom_times = Vec::new();
    for run in 0..opts.activation_runs {
        // Wait until both values are back to 0 (the previous run's load has left the window).
        for (name, metadata) in [
            ("act-direct", &activation_direct),
            ("act-prom", &activation_prom),
        ] {
            let so = reference(&format!("{name}-idle"), metadata);
            let name = client
                .get_metric_spec(so.clone())
                .await
                .unwrap()
                .into_inner()
                .metric_specs[0]
                .metric_name
                .clone();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let request = GetMetricsRequest {
                    scaled_object_ref: Some(so.clone()),
                    metric_name: name.clone(),
                };
                if let Ok(answer) = client.get_metrics(request).await
                    && answer.into_inner().metric_values[0].metric_value_float == 0.0
                {
                    break;
                }
                assert!(Instant::now() < deadline, "value never returned to 0");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut streams = Vec::new();
        for (name, metadata) in [
            ("act-direct", &activation_direct),
            ("act-prom", &activation_prom),
        ] {
            let mut stream = client
                .stream_is_active(reference(&format!("{name}-{run}"), metadata))
                .await
                .unwrap()
                .into_inner();
            let first = stream.next().await.unwrap().unwrap();
            assert!(!first.result, "{name} should start inactive");
            streams.push(stream);
        }
        let started = Instant::now();
        let load = Load::start(format!("{}/load/cpu", consumer.url("http")));
        let waits = streams.into_iter().map(|mut stream| async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(state))) if state.result => return started.elapsed(),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("activation stream ended: {other:?}"),
                }
            }
        });
        let times = futures::future::join_all(waits).await;
        drop(load);
        println!(
            "run {run}: direct {:.0} ms, prometheus {:.0} ms",
            times[0].as_secs_f64() * 1000.0,
            times[1].as_secs_f64() * 1000.0
        );
        direct_times.push(times[0]);
        prom_times.push(times[1]);
    }
    let summary = |times: &mut Vec<Duration>| {
        times.sort();
        (
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
        )
    };
    let (direct_median, direct_max) = summary(&mut direct_times);
    let (prom_median, prom_max) = summary(&mut prom_times);
    println!("| source | median ms | max ms |\n|---|---|---|");
    println!("| direct (poll 1s) | {direct_median:.0} | {direct_max:.0} |");
    println!("| prometheus (scrape 1s, poll 5s) | {prom_median:.0} | {prom_max:.0} |");
    println!(
        "ratio prometheus/direct (median): {:.1}",
        prom_median / direct_median.max(1.0)
    );

    // 3. Source requests while 100 ScaledObjects are polled.
    println!(
        "\n## 3. Source requests/s, 100 ScaledObjects, each polled (IsActive + GetMetrics) every 100 ms for {}s",
        (opts.seconds * 2).max(20)
    );
    println!(
        "| source | RPCs/s | source requests/s | scaler polls/s | poll interval | one-request-per-call peer req/s | ratio peer/scaler |"
    );
    println!("|---|---|---|---|---|---|---|");
    let direct_targets = format!("{}/metrics", consumer_direct.url("http"));
    for (label, metadata, interval) in [
        (
            "direct",
            meta(&[
                ("trigger", "backlog"),
                ("target", "5"),
                ("targets", &direct_targets),
            ]),
            1.0,
        ),
        (
            "prometheus",
            meta(&[("trigger", "backlog"), ("target", "5")]),
            5.0,
        ),
    ] {
        let spec = client
            .get_metric_spec(reference("so-0", &metadata))
            .await
            .unwrap()
            .into_inner();
        let name = spec.metric_specs[0].metric_name.clone();
        for i in 0..100 {
            client
                .get_metric_spec(reference(&format!("so-{i}"), &metadata))
                .await
                .unwrap();
        }
        // Let the first poll land before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let count_url = if label == "direct" {
            format!("{}/metrics", consumer_direct.url("http"))
        } else {
            format!("{}/metrics", prometheus.url)
        };
        let prefix = if label == "direct" {
            "http_requests_total{method=\"GET\",route=\"/metrics\""
        } else {
            "prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/query\"}"
        };
        let polls_url = format!("{}/metrics", scaler.url("http"));
        let source_id = scaler::trigger::TriggerSpec::from_metadata(&metadata)
            .unwrap()
            .source
            .id()
            .replace(
                "prometheus:default",
                &format!("prometheus:{}", prometheus.url),
            );
        let polls_prefix = format!("scaler_source_polls_total{{source=\"{source_id}\"}}");
        let polls_before = metric_sum(&polls_url, &polls_prefix).await;
        let before = metric_sum(&count_url, prefix).await;
        let seconds = (opts.seconds * 2).max(20);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let callers: Vec<_> = (0..100)
            .map(|i| {
                let mut client = channels[i % channels.len()].clone();
                let so = reference(&format!("so-{i}"), &metadata);
                let name = name.clone();
                let explain_url = format!("{}/explain", scaler.url("http"));
                tokio::spawn(async move {
                    let mut calls = 0u64;
                    let mut ticker = tokio::time::interval(Duration::from_millis(100));
                    while Instant::now() < deadline {
                        ticker.tick().await;
                        client
                            .is_active(so.clone())
                            .await
                            .map_err(|status| format!("IsActive: {status:?}"))?;
                        client
                            .get_metrics(GetMetricsRequest {
                                scaled_object_ref: Some(so.clone()),
                                metric_name: name.clone(),
                            })
                            .await
                            .map_err(|status| {
                                let explain = std::process::Command::new("curl")
                                    .args(["-s", &explain_url])
                                    .output()
                                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                                    .unwrap_or_default();
                                format!("GetMetrics: {status:?}\n/explain: {explain}")
                            })?;
                        calls += 2;
                    }
                    Ok::<u64, String>(calls)
                })
            })
            .collect();
        let mut calls = 0;
        for caller in callers {
            match caller.await.unwrap() {
                Ok(answered) => calls += answered,
                Err(error) => {
                    let lines = scaler.output_lines();
                    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                    panic!("{error}\nscaler output (last 40 lines):\n{tail}");
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = metric_sum(&count_url, prefix).await;
        let polls_rate = (metric_sum(&polls_url, &polls_prefix).await - polls_before) / elapsed;
        // The direct consumer counts our own read of its /metrics too.
        let own_reads = if label == "direct" { 1.0 } else { 0.0 };
        let source_rate = (after - before - own_reads) / elapsed;
        let rpc_rate = calls as f64 / elapsed;
        println!(
            "| {label} | {rpc_rate:.0} | {source_rate:.2} | {polls_rate:.2} | {interval}s | {rpc_rate:.0} | {:.0} |",
            rpc_rate / source_rate.max(0.001)
        );
    }
}
