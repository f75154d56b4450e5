//! Executing a [`RunPlan`]: readiness wait, the metrics endpoint, the monitor, the load with live progress, then the
//! report (cost, thresholds, verdict), cleanup, output and files. Returns the run's exit code, or the error that
//! stopped it (which carries its own).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cleanup::cleanup;
use super::plan::RunPlan;
use super::sources::{build_monitor, kube_client, namespace_default};
use super::verdict::{default_cost_query, judge, measure_target_cpu, write_termination_log};
use super::wait::{WaitError, wait_ready};
use crate::cli::{OutputFormat, RunArgs};
use crate::engine::run_load;
use crate::exit;
use crate::metrics::GeneratorMetrics;
use crate::model::ArrivalMode;
use crate::monitor::ReplicaSource;
use crate::report::Report;
use crate::report::scaling_timeline::LivePhase;
use crate::stats::IntervalStats;
use crate::trace::Tracing;
use load::error::AppError;

/// The metrics endpoint while it runs.
struct MetricsServer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Wait for every target's readiness path, as long as the plan says.
async fn await_targets(
    plan: &RunPlan,
    args: &RunArgs,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    if plan.wait_ready.is_zero() {
        return Ok(());
    }
    for base in plan.targets.urls() {
        let url = format!("{base}{}", args.ready_path);
        if !args.quiet {
            eprintln!(
                "waiting up to {} for {url}",
                humantime::format_duration(plan.wait_ready)
            );
        }
        match wait_ready(&url, plan.wait_ready, Duration::from_millis(500), shutdown).await {
            Ok(()) => {}
            Err(e @ WaitError::Timeout { .. }) => {
                let err = AppError::from(e);
                write_termination_log(&args.termination_log, &err.to_string());
                return Err(err);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn serve_metrics(
    args: &RunArgs,
    metrics: &Arc<GeneratorMetrics>,
) -> Result<Option<MetricsServer>, AppError> {
    if args.no_metrics {
        return Ok(None);
    }
    let addr = format!("{}:{}", args.metrics_host, args.metrics_port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        AppError::Runtime(format!(
            "cannot listen on {addr} for /metrics: {e} (use --metrics-port 0 or --no-metrics)"
        ))
    })?;
    let stop = CancellationToken::new();
    let registry = metrics.registry().clone();
    let until = stop.clone();
    let task = tokio::spawn(async move {
        let served =
            crate::metrics::serve(listener, registry, async move { until.cancelled().await }).await;
        // The port was bound, so this is a failure while serving: the run goes on, without its /metrics.
        if let Err(error) = served {
            tracing::warn!(%error, "the /metrics server stopped; the run goes on without it");
        }
    });
    Ok(Some(MetricsServer { stop, task }))
}

/// The replica source, on pod 0 only in a distributed run so the cluster API sees one watcher. A source that cannot
/// be built is reported and the run goes on without the scaling report.
async fn monitor_for(args: &RunArgs) -> Option<Arc<dyn ReplicaSource>> {
    if !args.monitor {
        return None;
    }
    if args.pod_index != 0 {
        if !args.quiet {
            eprintln!(
                "pod {} of {}: pod 0 monitors replicas",
                args.pod_index, args.pods
            );
        }
        return None;
    }
    match build_monitor(args).await {
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
}

/// Start the cluster faults, timed from now (the start of the load). A distributed run's pod 0 carries them out.
async fn start_chaos(
    plan: &RunPlan,
    args: &RunArgs,
) -> Result<Option<crate::chaos::ChaosTasks>, AppError> {
    if plan.chaos.is_empty() || args.pod_index != 0 {
        return Ok(None);
    }
    let m = &args.monitor_opts;
    let client = kube_client(m)
        .await
        .map_err(|e| AppError::Runtime(format!("chaos: no Kubernetes API: {e}")))?;
    let cluster = crate::chaos::Cluster::new(
        client,
        crate::chaos::ClusterConfig {
            namespace: m.namespace.clone().unwrap_or_else(namespace_default),
            deployment: m.deployment.clone(),
            scaler: args.chaos_scaler.clone(),
            selector: args.chaos_selector.clone(),
        },
    );
    let start = std::time::Instant::now();
    let scale = args.time_scale;
    let pacing = crate::chaos::Pacing {
        start,
        end: start + plan.profile.duration(),
        // kubectl drain retries a budget's 429 every 5 s until its timeout; here 30 s (time-scaled), never past
        // the load.
        evict_retry: Duration::from_secs(30)
            .mul_f64(scale)
            .max(Duration::from_millis(500)),
        poll: Duration::from_secs(1)
            .mul_f64(scale)
            .clamp(Duration::from_millis(50), Duration::from_secs(1)),
    };
    if !args.quiet {
        for f in &plan.chaos {
            eprintln!("chaos: {}", f.describe());
        }
    }
    Ok(Some(crate::chaos::ChaosTasks::spawn(
        cluster,
        plan.chaos.clone(),
        pacing,
    )))
}

/// The SLO a recovery is judged by when the run gives none (`--slo`, or latency/error thresholds): the scaling
/// report's usual objective.
fn default_chaos_slo() -> timeline::Slo {
    timeline::Slo::parse(contract::DEFAULT_SLO).expect("the contract's default SLO parses")
}

/// Print each interval as it closes: a JSON line, or a progress line on stderr.
fn spawn_printer(
    output: OutputFormat,
    quiet: bool,
    slo: Option<timeline::Slo>,
) -> (tokio::sync::mpsc::Sender<IntervalStats>, JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<IntervalStats>(64);
    let task = tokio::spawn(async move {
        let mut live = LivePhase::new(slo);
        while let Some(stats) = rx.recv().await {
            match output {
                OutputFormat::Json => {
                    let line = serde_json::json!({"type": "interval", "interval": stats});
                    println!("{line}");
                }
                OutputFormat::Text if !quiet => {
                    eprintln!("{}", stats.progress_line());
                    // The scaling line only once replicas are observed (`--monitor`).
                    if stats.replicas.is_some()
                        && let Some(phase) = live.push(&stats)
                    {
                        eprintln!("          scaling: {phase}");
                    }
                }
                OutputFormat::Text => {}
            }
        }
    });
    (tx, task)
}

fn announce(plan: &RunPlan, args: &RunArgs) {
    if args.quiet {
        return;
    }
    eprintln!(
        "running {} for {} against {} ({} model{})",
        plan.profile.name,
        humantime::format_duration(plan.profile.duration()),
        plan.targets.urls().join(", "),
        match plan.mode {
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

/// Run the plan to its verdict; the exit code says how it went.
pub async fn execute(
    plan: RunPlan,
    args: &RunArgs,
    shutdown: CancellationToken,
) -> Result<i32, AppError> {
    await_targets(&plan, args, &shutdown).await?;
    let metrics = GeneratorMetrics::new();
    let server = serve_metrics(args, &metrics).await?;
    let monitor = monitor_for(args).await;
    let tracing_ = match Tracing::from_env(args.trace_sample) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            eprintln!("generator run: tracing disabled: {e}");
            None
        }
    };
    let mut options = plan.options.clone();
    options.tracing = tracing_.clone();
    options.metrics = Some(metrics.clone());
    // Every request's outcome is kept when faults are measured.
    let request_log = (!plan.chaos.is_empty()).then(crate::engine::RequestLog::new);
    options.request_log = request_log.clone();
    let (progress, printer) = spawn_printer(args.output, args.quiet, plan.options.slo.clone());
    announce(&plan, args);
    let chaos = match start_chaos(&plan, args).await {
        Ok(c) => c,
        Err(e) => {
            if let Some(s) = server {
                s.stop().await;
            }
            return Err(e);
        }
    };
    let load_start = std::time::Instant::now();
    let result = run_load(
        plan.profile.clone(),
        plan.targets.clone(),
        options,
        monitor,
        Some(progress),
        shutdown.clone(),
    )
    .await;
    let _ = printer.await;
    let load_end = std::time::Instant::now().min(load_start + plan.profile.duration());
    // Undo what is still in force (partitions, the scaler's count, cordons) on every path, an error included.
    let faults = match chaos {
        Some(c) => Some(c.finish().await),
        None => None,
    };
    let data = match result {
        Ok(d) => d,
        Err(e) => {
            if let Some(s) = server {
                s.stop().await;
            }
            return Err(AppError::usage(e));
        }
    };
    let mut report = Report::assemble(data);
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
    judge(&mut report, &plan.thresholds);
    if let (Some(faults), Some(log)) = (&faults, &request_log) {
        let records = log.records();
        let slo = plan.options.slo.clone().unwrap_or_else(default_chaos_slo);
        report.chaos = Some(crate::chaos::report(
            faults,
            &crate::chaos::Measured {
                load_start,
                load_end,
                log: &records,
                slo: &slo,
                time_scale: args.time_scale,
            },
            &plan.chaos_thresholds,
        ));
        crate::chaos::observed::follow_autoscaler(&mut report);
        crate::chaos::judge(&mut report);
    }

    if args.cleanup && args.pod_index == 0 && !shutdown.is_cancelled() {
        let c = cleanup(&plan.targets, &plan.headers, Duration::from_secs(120)).await;
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
            if let Some(chaos) = &report.chaos {
                print!("{}", chaos.render());
            }
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
    if let Some(s) = server {
        s.stop().await;
    }
    Ok(code)
}
