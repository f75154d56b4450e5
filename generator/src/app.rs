//! The commands behind the CLI: `run` (profile or ad-hoc, readiness wait, metrics server, monitor, progress,
//! thresholds, report files, cleanup, termination log), `wait` and `profiles`. Each returns the process exit code.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Cli, Command, OutputFormat, ProfilesArgs, ProfilesCommand, RateArg, RunArgs, WaitArgs,
};
use crate::client::{RecyclePolicy, SimpleClient};
use crate::engine::{ArrivalMode, RunOptions, Split, run_load};
use crate::exit;
use crate::metrics::GeneratorMetrics;
use crate::monitor::{
    ExplainSource, FallbackSource, KubeSource, KubeTarget, PrometheusSource, ReplicaSource,
};
use crate::profile::{Profile, RequestSpec};
use crate::report::Report;
use crate::targets::TargetSet;
use crate::threshold::Threshold;
use crate::trace::Tracing;

/// Run the parsed command line; returns the exit code.
pub async fn run_cli(cli: Cli, shutdown: CancellationToken) -> i32 {
    match cli.into_command() {
        Command::Run(args) => run_command(args, shutdown).await,
        Command::Wait(args) => wait_command(args, shutdown).await,
        Command::Profiles(args) => profiles_command(args),
    }
}

/// Why the target is not ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{url} was not ready within {timeout:?}; last answer: {last}")]
    Timeout {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("interrupted while waiting for {url}")]
    Interrupted { url: String },
}

/// Poll `url` until it answers 200, for at most `timeout`.
pub async fn wait_ready(
    url: &str,
    timeout: Duration,
    interval: Duration,
    shutdown: &CancellationToken,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let attempt_timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut last;
    loop {
        // A fresh client per attempt: behind a Service each attempt may reach another pod.
        let client = SimpleClient::new(attempt_timeout);
        match client.get(url).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => {
                last = format!(
                    "status {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )
            }
            Err(e) => last = e.to_string(),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                url: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(WaitError::Interrupted { url: url.to_string() }),
            _ = tokio::time::sleep(interval.min(deadline - now)) => {}
        }
    }
}

async fn wait_command(args: WaitArgs, shutdown: CancellationToken) -> i32 {
    let base = match crate::targets::Target::parse(&args.url) {
        Ok(t) => t.url,
        Err(e) => {
            eprintln!("generator wait: {e}");
            return exit::USAGE;
        }
    };
    let url = format!("{base}{}", args.ready_path);
    eprintln!(
        "waiting up to {} for {url} to answer 200",
        humantime::format_duration(args.timeout)
    );
    match wait_ready(&url, args.timeout, args.interval, &shutdown).await {
        Ok(()) => {
            eprintln!("{url} is ready");
            exit::OK
        }
        Err(e @ WaitError::Timeout { .. }) => {
            eprintln!("generator wait: {e}");
            exit::TARGET_NOT_READY
        }
        Err(e) => {
            eprintln!("generator wait: {e}");
            exit::INTERRUPTED
        }
    }
}

fn profiles_command(args: ProfilesArgs) -> i32 {
    match args.command {
        Some(ProfilesCommand::Show { name }) => match Profile::builtin_or_err(&name) {
            Ok(p) => {
                print!("{}", p.to_yaml());
                exit::OK
            }
            Err(e) => {
                eprintln!("generator profiles: {e}");
                exit::USAGE
            }
        },
        None => {
            print!("{}", profiles_table());
            exit::OK
        }
    }
}

/// The `generator profiles` listing.
pub fn profiles_table() -> String {
    let mut s = format!(
        "{:<14} {:>9} {:>10} {:>10}  {}\n",
        "profile", "duration", "peak req/s", "requests", "stages / request mix"
    );
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).expect("builtin");
        let stages: Vec<String> = p
            .stages
            .iter()
            .map(|st| {
                format!(
                    "{} {}{}",
                    humantime::format_duration(st.duration),
                    if st.ramp { "ramp to " } else { "hold " },
                    st.rate
                )
            })
            .collect();
        s.push_str(&format!(
            "{:<14} {:>9} {:>10.0} {:>10.0}  {}\n{:<14} {:>9} {:>10} {:>10}  mix: {}\n{:<14} {:>9} {:>10} {:>10}  {}\n",
            p.name,
            humantime::format_duration(p.duration()).to_string(),
            p.peak_rate(),
            p.expected_requests(),
            stages.join(", "),
            "",
            "",
            "",
            "",
            p.mix_summary(),
            "",
            "",
            "",
            "",
            p.description
        ));
    }
    s.push_str("\n`generator profiles show NAME` prints one as YAML; `--profile-file FILE` runs your own.\n");
    s
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("generator run: {msg}");
    exit::USAGE
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} must be `Name: value`"))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes())
        .map_err(|_| format!("bad header name {k:?}"))?;
    let value =
        HeaderValue::from_str(v.trim()).map_err(|_| format!("bad header value for {k:?}"))?;
    Ok((name, value))
}

/// The profile a `run` asks for, with scaling applied, and the arrival mode.
pub fn build_profile(args: &RunArgs) -> Result<(Profile, ArrivalMode), String> {
    let (mut profile, mode) = match (&args.test, &args.profile_file, args.rate) {
        (Some(name), None, None) => (
            Profile::builtin_or_err(name).map_err(|e| e.to_string())?,
            ArrivalMode::Open,
        ),
        (None, Some(path), None) => (
            Profile::from_file(path).map_err(|e| e.to_string())?,
            ArrivalMode::Open,
        ),
        (None, None, Some(rate)) => {
            let duration = args
                .duration
                .ok_or("--rate needs --duration (e.g. --duration 30s)")?;
            if duration.is_zero() {
                return Err("--duration must be > 0".into());
            }
            let body = match &args.body {
                Some(b) => Some(
                    serde_json::from_str::<serde_json::Value>(b)
                        .map_err(|e| format!("--body is not valid JSON: {e}"))?,
                ),
                None => None,
            };
            let method = args
                .method
                .clone()
                .unwrap_or_else(|| {
                    if body.is_some() {
                        "POST".into()
                    } else {
                        "GET".into()
                    }
                })
                .to_ascii_uppercase();
            let request = RequestSpec {
                name: None,
                method,
                path: args.path.clone(),
                body,
                weight: 1,
            };
            match rate {
                RateArg::PerSecond(r) => {
                    (Profile::constant(r, duration, request), ArrivalMode::Open)
                }
                RateArg::Max => (
                    Profile::constant(1.0, duration, request),
                    ArrivalMode::ClosedLoop {
                        connections: args.connections.unwrap_or(50),
                    },
                ),
            }
        }
        (None, None, None) => {
            return Err(format!(
                "say what to send: --test PROFILE ({}), --profile-file FILE, or --rate R --duration D",
                Profile::builtin_names().join(", ")
            ));
        }
        _ => return Err("--test, --profile-file and --rate exclude each other".into()),
    };
    if args.time_scale != 1.0 {
        profile = profile.scale_time(args.time_scale);
    }
    if args.rate_scale != 1.0 {
        profile = profile.scale_rate(args.rate_scale);
    }
    if let (Some(d), true) = (args.duration, args.rate.is_none()) {
        if d.is_zero() {
            return Err("--duration must be > 0".into());
        }
        profile = profile.with_duration(d);
    }
    profile.validate().map_err(|e| e.to_string())?;
    Ok((profile, mode))
}

fn namespace_default() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Build the `--monitor` source chain: Kubernetes API, then the scaler's /explain, then Prometheus.
pub async fn build_monitor(args: &RunArgs) -> Result<Arc<dyn ReplicaSource>, String> {
    let m = &args.monitor_opts;
    let namespace = m.namespace.clone().unwrap_or_else(namespace_default);
    let scaled_object = m
        .scaled_object
        .clone()
        .unwrap_or_else(|| m.deployment.clone());
    let kube_target = KubeTarget {
        namespace: namespace.clone(),
        deployment: m.deployment.clone(),
        hpa: Some(
            m.hpa
                .clone()
                .unwrap_or_else(|| format!("keda-hpa-{scaled_object}")),
        ),
        scaled_object: Some(scaled_object),
    };
    let mut sources: Vec<Arc<dyn ReplicaSource>> = Vec::new();
    let mut notes = Vec::new();
    let kube = match &m.kube_api_url {
        Some(url) => KubeSource::for_url(url, kube_target).map(Some),
        None => match KubeSource::infer(m.kubeconfig.as_deref(), kube_target).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if m.kubeconfig.is_some() => Err(e),
            Err(e) => {
                notes.push(format!("no Kubernetes config ({e})"));
                Ok(None)
            }
        },
    };
    match kube {
        Ok(Some(k)) => sources.push(Arc::new(k)),
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    if let Some(url) = &m.scaler_url {
        sources.push(Arc::new(ExplainSource::new(url)));
    }
    if let Some(url) = &m.prometheus_url {
        sources.push(Arc::new(PrometheusSource::new(
            url,
            &namespace,
            &m.deployment,
        )));
    }
    if sources.is_empty() {
        return Err(format!(
            "--monitor has no source: {}; give --kube-api-url, --kubeconfig, --scaler-url or --prometheus-url",
            notes.join("; ")
        ));
    }
    if sources.len() == 1 {
        return Ok(sources.pop().expect("one source"));
    }
    Ok(Arc::new(FallbackSource::new(sources)))
}

/// The default `--cost-query`: CPU seconds of the target Deployment's pods over the run (cAdvisor/process series).
pub fn default_cost_query(namespace: &str, deployment: &str) -> String {
    format!(
        "sum(increase(process_cpu_seconds_total{{namespace=\"{namespace}\",pod=~\"{deployment}-.*\"}}[{{range}}]))"
    )
}

/// Measure the target's CPU over the run with `query` (its `{range}` becomes the run's length in seconds) and store
/// it in the report as cost per 1000 requests. Errors are returned as text for the caller to show.
pub async fn measure_target_cpu(
    prometheus_url: &str,
    query: &str,
    report: &mut Report,
) -> Result<(), String> {
    // The window reaches back to the run's start from now (the query may come a little after the run ended).
    let since_start = humantime::parse_rfc3339(&report.started_at)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(report.elapsed_s, |d| d.as_secs_f64());
    let range = format!("{}s", since_start.ceil().max(1.0) as u64);
    let promql = query.replace("{range}", &range);
    let source = PrometheusSource::new(prometheus_url, "", "");
    let value = source
        .query_scalar(&promql)
        .await
        .map_err(|e| e.to_string())?;
    let cpu_seconds = value.ok_or_else(|| format!("no series for {promql}"))?;
    report.target_cpu = Some(crate::report::TargetCpu {
        query: promql,
        cpu_seconds,
        cpu_seconds_per_1000_requests: (report.requests > 0)
            .then(|| cpu_seconds * 1000.0 / report.requests as f64),
    });
    Ok(())
}

/// Result of `--cleanup`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupSummary {
    pub stop_calls: u32,
    pub released: bool,
    pub message: String,
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// Stop sustained jobs on every target and wait until held memory and sustained workers are back to zero. Behind a
/// Service each call may reach a different pod, so stop calls go out on fresh connections several times, and the
/// check needs three clean answers in a row. Idempotent: stopping nothing is fine.
pub async fn cleanup(
    targets: &TargetSet,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> CleanupSummary {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stop_calls = 0;
    let mut problems = Vec::new();
    for base in targets.urls() {
        for _ in 0..3 {
            let client = SimpleClient::new(Duration::from_secs(5));
            match client
                .request(
                    Method::POST,
                    &format!("{base}/load/cpu/sustained/stop"),
                    Some(&serde_json::json!({})),
                    headers,
                )
                .await
            {
                Ok((s, _)) if s < 300 => stop_calls += 1,
                Ok((s, body)) => {
                    problems.push(format!(
                        "{base}: stop answered {s} {}",
                        String::from_utf8_lossy(&body)
                    ));
                    break;
                }
                Err(e) => {
                    problems.push(format!("{base}: {e}"));
                    break;
                }
            }
        }
    }
    let mut released = false;
    let mut clean_in_a_row = 0;
    let mut last = String::new();
    'outer: while tokio::time::Instant::now() < deadline {
        let mut all_clean = true;
        for base in targets.urls() {
            let client = SimpleClient::new(Duration::from_secs(5));
            match client.get(&format!("{base}/metrics")).await {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(&body);
                    let held = metric_value(&text, "consumer_memory_held_bytes").unwrap_or(0.0);
                    let workers = metric_value(&text, "consumer_sustained_workers").unwrap_or(0.0);
                    if held > 0.0 || workers > 0.0 {
                        all_clean = false;
                        last = format!("{base}: {held} bytes held, {workers} sustained workers");
                    }
                }
                Ok((s, _)) => {
                    all_clean = false;
                    last = format!("{base}/metrics answered {s}");
                }
                Err(e) => {
                    all_clean = false;
                    last = format!("{base}/metrics: {e}");
                }
            }
        }
        clean_in_a_row = if all_clean { clean_in_a_row + 1 } else { 0 };
        if clean_in_a_row >= 3 {
            released = true;
            break 'outer;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let message = if released {
        format!("cleanup: {stop_calls} stop call(s); no memory held, no sustained workers")
    } else {
        format!(
            "cleanup: not released within {}: {last}{}",
            humantime::format_duration(timeout),
            if problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            }
        )
    };
    CleanupSummary {
        stop_calls,
        released,
        message,
    }
}

/// Write the verdict to the termination log when that file exists (Kubernetes creates it in the container).
pub fn write_termination_log(path: &Path, verdict: &str) {
    if path.exists()
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
    {
        let _ = writeln!(f, "{verdict}");
    }
}

/// Fill in thresholds, exit code and verdict.
pub fn judge(report: &mut Report, thresholds: &[Threshold]) {
    report.thresholds = thresholds.iter().map(|t| t.evaluate(report)).collect();
    let failed: Vec<String> = report
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{} ({})", t.expression, t.message))
        .collect();
    let code = if report.interrupted {
        exit::INTERRUPTED
    } else if report.self_check.saturated {
        exit::GENERATOR_SATURATED
    } else if !failed.is_empty() {
        exit::THRESHOLDS_BREACHED
    } else {
        exit::OK
    };
    let summary = format!(
        "{} {:.0}s: {} requests at {:.1} req/s (asked {:.1}), p95 {}, errors {:.2}%, dropped {}",
        report.profile,
        report.duration_s,
        report.requests,
        report.achieved_rate,
        report.target_rate,
        crate::stats::fmt_ms(report.latency.p95_ms),
        report.error_rate * 100.0,
        report.dropped
    );
    report.verdict = match code {
        exit::OK => format!("PASS {summary}"),
        exit::INTERRUPTED => format!("INTERRUPTED (partial report) {summary}"),
        exit::GENERATOR_SATURATED => format!(
            "GENERATOR SATURATED {summary}: {}",
            report.self_check.message
        ),
        _ => format!("FAIL thresholds breached: {}; {summary}", failed.join(", ")),
    };
    report.exit_code = code;
}

async fn run_command(args: RunArgs, shutdown: CancellationToken) -> i32 {
    let (profile, mode) = match build_profile(&args) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let thresholds: Vec<Threshold> = match args
        .thresholds
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Threshold::parse(t))
        .collect()
    {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let targets = match TargetSet::new(&args.url) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    if args.pods == 0 || args.pod_index >= args.pods {
        return usage(format!(
            "--pod-index {} must be below --pods {}",
            args.pod_index, args.pods
        ));
    }
    let mut headers = Vec::new();
    for h in args.headers.iter().filter(|h| !h.trim().is_empty()) {
        match parse_header(h) {
            Ok(kv) => headers.push(kv),
            Err(e) => return usage(e),
        }
    }
    if let Some(token) = &args.load_token {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(v) => headers.push((http::header::AUTHORIZATION, v)),
            Err(_) => return usage("--load-token has characters not allowed in a header"),
        }
    }
    let is_profile = args.rate.is_none();
    let recycle_default = is_profile && profile.recycle_connections;
    let pick = |explicit: Option<Duration>, default: Duration| match explicit {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if recycle_default => Some(default),
        None => None,
    };
    let recycle = RecyclePolicy {
        max_age: pick(
            args.conn_max_age,
            RecyclePolicy::profile_default().max_age.expect("set"),
        ),
        max_requests: match args.conn_max_requests {
            Some(0) => None,
            Some(n) => Some(n),
            None if recycle_default => RecyclePolicy::profile_default().max_requests,
            None => None,
        },
    };
    let max_in_flight = args.max_in_flight.or(match mode {
        ArrivalMode::Open => args.connections,
        ArrivalMode::ClosedLoop { connections } => Some(connections),
    });
    let max_in_flight = max_in_flight.unwrap_or(1000);
    if max_in_flight == 0 {
        return usage("--max-in-flight / --connections must be >= 1");
    }

    // Readiness.
    let wait_for = args.wait_ready.unwrap_or(if is_profile {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    });
    if !wait_for.is_zero() {
        for base in targets.urls() {
            let url = format!("{base}{}", args.ready_path);
            if !args.quiet {
                eprintln!(
                    "waiting up to {} for {url}",
                    humantime::format_duration(wait_for)
                );
            }
            match wait_ready(&url, wait_for, Duration::from_millis(500), &shutdown).await {
                Ok(()) => {}
                Err(e @ WaitError::Timeout { .. }) => {
                    let verdict = format!("TARGET NOT READY: {e}");
                    eprintln!("{verdict}");
                    write_termination_log(&args.termination_log, &verdict);
                    return exit::TARGET_NOT_READY;
                }
                Err(e) => {
                    eprintln!("{e}");
                    return exit::INTERRUPTED;
                }
            }
        }
    }

    // Metrics endpoint.
    let metrics = GeneratorMetrics::new();
    let metrics_stop = CancellationToken::new();
    let metrics_task = if args.no_metrics {
        None
    } else {
        let addr = format!("{}:{}", args.metrics_host, args.metrics_port);
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(listener) => {
                let stop = metrics_stop.clone();
                let m = metrics.clone();
                Some(tokio::spawn(async move {
                    let _ =
                        crate::metrics::serve(listener, m, async move { stop.cancelled().await })
                            .await;
                }))
            }
            Err(e) => {
                eprintln!(
                    "generator run: cannot listen on {addr} for /metrics: {e} (use --metrics-port 0 or --no-metrics)"
                );
                return exit::RUNTIME_ERROR;
            }
        }
    };

    // Monitor: pod 0 only in a distributed run, so the cluster API sees one watcher.
    let monitor = if args.monitor && args.pod_index == 0 {
        match build_monitor(&args).await {
            Ok(m) => {
                if !args.quiet {
                    eprintln!("monitoring replicas through {}", m.name());
                }
                Some(m)
            }
            Err(e) => {
                eprintln!("generator run: --monitor: {e}; running without the scaling report");
                None
            }
        }
    } else {
        if args.monitor && !args.quiet {
            eprintln!(
                "pod {} of {}: pod 0 monitors replicas",
                args.pod_index, args.pods
            );
        }
        None
    };

    let tracing_ = match Tracing::from_env(args.trace_sample) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            eprintln!("generator run: tracing disabled: {e}");
            None
        }
    };

    let opts = RunOptions {
        mode,
        max_in_flight,
        timeout: args.timeout,
        interval: args.interval,
        drain_timeout: args.drain_timeout,
        recycle,
        split: Split {
            index: args.pod_index,
            count: args.pods,
        },
        headers: headers.clone(),
        tracing: tracing_.clone(),
        monitor_interval: args.monitor_opts.monitor_interval,
        watch_after: args.monitor_opts.watch_after,
        metrics: Some(metrics.clone()),
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::stats::IntervalStats>(64);
    let output = args.output;
    let quiet = args.quiet;
    let printer = tokio::spawn(async move {
        while let Some(stats) = rx.recv().await {
            match output {
                OutputFormat::Json => {
                    let line = serde_json::json!({"type": "interval", "interval": stats});
                    println!("{line}");
                }
                OutputFormat::Text if !quiet => eprintln!("{}", stats.progress_line()),
                OutputFormat::Text => {}
            }
        }
    });
    if !quiet {
        eprintln!(
            "running {} for {} against {} ({} model{})",
            profile.name,
            humantime::format_duration(profile.duration()),
            targets.urls().join(", "),
            match mode {
                ArrivalMode::Open => "open".to_string(),
                ArrivalMode::ClosedLoop { connections } =>
                    format!("closed-loop, {connections} connections"),
            },
            if args.pods > 1 {
                format!(", pod {} of {}", args.pod_index, args.pods)
            } else {
                String::new()
            }
        );
    }
    let result = run_load(
        profile,
        targets.clone(),
        opts,
        monitor,
        Some(tx),
        shutdown.clone(),
    )
    .await;
    let _ = printer.await;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            metrics_stop.cancel();
            return usage(e);
        }
    };
    if let Some(prom) = &args.monitor_opts.prometheus_url
        && (args.monitor || args.monitor_opts.cost_query.is_some())
    {
        let m = &args.monitor_opts;
        let query = m.cost_query.clone().unwrap_or_else(|| {
            default_cost_query(
                &m.namespace.clone().unwrap_or_else(namespace_default),
                &m.deployment,
            )
        });
        if let Err(e) = measure_target_cpu(prom, &query, &mut report).await {
            eprintln!("generator run: target CPU not measured: {e}");
        }
    }
    judge(&mut report, &thresholds);

    if args.cleanup && args.pod_index == 0 && !shutdown.is_cancelled() {
        let c = cleanup(&targets, &headers, Duration::from_secs(120)).await;
        eprintln!("{}", c.message);
    }

    let mut code = report.exit_code;
    match args.output {
        OutputFormat::Json => {
            let line = serde_json::json!({"type": "report", "report": report});
            println!("{line}");
        }
        OutputFormat::Text => {
            println!("{}", report.render_summary());
            print!("{}", report.render_timeline(72));
        }
    }
    if let Some(path) = &args.report {
        match report.write_files(path) {
            Ok(svg) => eprintln!("report written to {} and {}", path.display(), svg.display()),
            Err(e) => {
                eprintln!(
                    "generator run: cannot write the report to {}: {e}",
                    path.display()
                );
                if code == exit::OK {
                    code = exit::RUNTIME_ERROR;
                }
            }
        }
    }
    write_termination_log(&args.termination_log, &report.verdict);
    if let Some(t) = tracing_ {
        // Flushing blocks until the exporter answers; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    metrics_stop.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["generator", "run", "--url", "http://127.0.0.1:1"];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v).unwrap().into_command() {
            Command::Run(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn profile_building() {
        let (p, mode) = build_profile(&run_args(&[
            "--test",
            "demo",
            "--time-scale",
            "0.1",
            "--rate-scale",
            "2",
        ]))
        .unwrap();
        assert_eq!(mode, ArrivalMode::Open);
        assert_eq!(p.duration(), Duration::from_secs(9));
        assert_eq!(p.peak_rate(), 100.0);
        let (p, mode) =
            build_profile(&run_args(&["--rate", "max", "--duration", "2s", "-c", "4"])).unwrap();
        assert_eq!(mode, ArrivalMode::ClosedLoop { connections: 4 });
        assert_eq!(p.requests[0].method, "GET");
        let (p, _) = build_profile(&run_args(&[
            "--rate",
            "10",
            "--duration",
            "2s",
            "--body",
            "{\"a\":1}",
            "--path",
            "/load/io",
        ]))
        .unwrap();
        assert_eq!(p.requests[0].method, "POST");
        assert!(
            build_profile(&run_args(&["--rate", "10"]))
                .unwrap_err()
                .contains("--duration")
        );
        assert!(
            build_profile(&run_args(&[
                "--rate",
                "10",
                "--duration",
                "1s",
                "--body",
                "{"
            ]))
            .unwrap_err()
            .contains("JSON")
        );
        assert!(
            build_profile(&run_args(&[]))
                .unwrap_err()
                .contains("--test")
        );
        assert!(
            build_profile(&run_args(&["--test", "nope"]))
                .unwrap_err()
                .contains("unknown profile")
        );
    }

    #[test]
    fn metric_lines() {
        let text = "# HELP x\nconsumer_memory_held_bytes 0\nconsumer_sustained_workers 2\n";
        assert_eq!(metric_value(text, "consumer_sustained_workers"), Some(2.0));
        assert_eq!(metric_value(text, "missing"), None);
    }

    #[test]
    fn profiles_listing_names_every_builtin() {
        let t = profiles_table();
        for n in Profile::builtin_names() {
            assert!(t.contains(n));
        }
    }
}
