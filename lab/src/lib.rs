//! `lab`: the cluster-free autoscaling lab. Spawns the real scaler and consumer replicas on
//! 127.0.0.1, drives a load profile at the ready replicas, and plays KEDA + HPA with the `autoscaler`
//! crate's controller, starting and stopping consumer processes as it decides.

pub mod chart;
pub mod keda;
pub mod process;
pub mod replicas;
pub mod view;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoscaler::{Controller, Decision, ScalingConfig, StepInput};
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use generator::engine::{RunOptions, run_load};
use generator::monitor::{MonitorError, ReplicaSnapshot, ReplicaSource};
use generator::profile::Profile;
use generator::targets::TargetSet;
use keda::{ScalerLink, check_trigger, local_metadata};
use process::{ChildProcess, locate_binary};
use replicas::{ReplicaPool, ReplicaTemplate};
use view::{DecisionRecord, LabView, LiveMode};

/// The project's default ScaledObject, built in so the lab runs from any directory.
const BUILTIN_SCALEDOBJECT: &str =
    include_str!("../../manifests/components/keda/scaledobject.yaml");
/// Where the default ScaledObject lives in the repository (preferred when it exists: edits take effect).
const DEFAULT_SCALEDOBJECT_PATH: &str = "manifests/components/keda/scaledobject.yaml";

/// Options of `lab`.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Load profile: a built-in name (`generator profiles`) or a profile YAML file.
    #[arg(long = "test", env = "LAB_TEST", default_value = "demo")]
    pub test: String,
    /// The KEDA ScaledObject to obey (default: manifests/components/keda/scaledobject.yaml, or the copy
    /// built into the binary when that file is not found).
    #[arg(long, env = "LAB_SCALEDOBJECT")]
    pub scaledobject: Option<PathBuf>,
    /// Multiply every duration of the ScaledObject (polling, cooldowns, stabilization windows, policy
    /// periods, trigger windows) and of the profile by this factor. 1 = real KEDA/HPA timing.
    #[arg(long, env = "LAB_TIME_SCALE", default_value_t = 0.5)]
    pub time_scale: f64,
    /// Do not spawn anything: load the consumer URL(s) and ask the scaler given; the controller's
    /// decisions are shown (simulated replica count), not applied.
    #[arg(long, env = "LAB_NO_SPAWN", requires_all = ["consumer_url", "scaler_addr"])]
    pub no_spawn: bool,
    /// With --no-spawn: consumer base URL(s) to load (comma separated or repeated).
    #[arg(long, env = "LAB_CONSUMER_URL", value_delimiter = ',')]
    pub consumer_url: Vec<String>,
    /// With --no-spawn: the scaler's gRPC address (host:port or http://host:port).
    #[arg(long, env = "LAB_SCALER_ADDR")]
    pub scaler_addr: Option<String>,
    /// Consumer binary (default: `consumer` beside this executable).
    #[arg(long, env = "LAB_CONSUMER_BIN")]
    pub consumer_bin: Option<PathBuf>,
    /// Scaler binary (default: `scaler` beside this executable).
    #[arg(long, env = "LAB_SCALER_BIN")]
    pub scaler_bin: Option<PathBuf>,
    /// Extra argument for every consumer replica (repeatable), e.g. `--consumer-arg=--executors=4`.
    #[arg(long = "consumer-arg", allow_hyphen_values = true)]
    pub consumer_args: Vec<String>,
    /// Override maxReplicaCount (this machine has few cores; the override is shown on screen).
    #[arg(long, env = "LAB_MAX_REPLICAS", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_replicas: Option<u32>,
    /// After the profile ends, keep the controller running without load so the scale-down is seen, until
    /// replicas are back at rest or at most this long (default: what the ScaledObject's scale-down rules
    /// need, plus a margin).
    #[arg(long, env = "LAB_SETTLE", value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,
    /// Directory for the results (report.json, report.svg, triggers.svg, decisions.jsonl, summary.txt).
    #[arg(long, env = "LAB_OUT", default_value = "reports/lab")]
    pub out: PathBuf,
    /// Live view: `auto` (redraw on a terminal, one line per second otherwise), `tty`, `plain`, `off`.
    #[arg(long, env = "LAB_LIVE", default_value = "auto", value_parser = ["auto", "tty", "plain", "off"])]
    pub live: String,
}

/// Why the lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("ScaledObject {path}: {source}")]
    Spec {
        path: String,
        source: autoscaler::SpecError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("starting {what}: {source}")]
    Start {
        what: String,
        source: process::ProcessError,
    },
    #[error("load engine: {0}")]
    Engine(#[from] generator::engine::EngineError),
    #[error("writing the report to {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl LabError {
    /// The exit code of this failure (docs/exit-codes.md): usage for bad input, not-ready for a child that never came
    /// up, runtime error for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            LabError::Spec { .. } | LabError::Usage(_) => contract::exit::USAGE,
            LabError::Start { .. } => contract::exit::TARGET_NOT_READY,
            LabError::Engine(_) | LabError::Io { .. } => contract::exit::RUNTIME_ERROR,
        }
    }
}

/// What a finished lab run produced (also returned to tests).
#[derive(Debug)]
pub struct LabOutcome {
    pub exit_code: i32,
    pub report: generator::report::Report,
    pub decisions: Vec<DecisionRecord>,
    /// Every child pid the lab spawned.
    pub pids: Vec<u32>,
    pub out_dir: PathBuf,
}

/// Run the lab; returns the process exit code.
pub async fn run(args: LabArgs) -> Result<i32, LabError> {
    let shutdown = CancellationToken::new();
    let ctrl_c = shutdown.clone();
    let signals = tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        ctrl_c.cancel();
    });
    let outcome = run_with(args, shutdown).await;
    signals.abort();
    outcome.map(|o| o.exit_code)
}

/// Resolve the ScaledObject: the given file, the repository's default, or the built-in copy.
fn load_scaledobject(args: &LabArgs) -> Result<(String, ScalingConfig), LabError> {
    let (origin, text) = match &args.scaledobject {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| {
                LabError::Usage(format!(
                    "cannot read --scaledobject {}: {e}",
                    path.display()
                ))
            })?,
        ),
        None => match std::fs::read_to_string(DEFAULT_SCALEDOBJECT_PATH) {
            Ok(text) => (DEFAULT_SCALEDOBJECT_PATH.to_string(), text),
            Err(_) => (
                format!("{DEFAULT_SCALEDOBJECT_PATH} (built-in copy)"),
                BUILTIN_SCALEDOBJECT.to_string(),
            ),
        },
    };
    let spec_error = |source| LabError::Spec {
        path: origin.clone(),
        source,
    };
    let mut config = ScalingConfig::from_yaml(&text).map_err(spec_error)?;
    for trigger in &config.triggers {
        check_trigger(trigger).map_err(|m| LabError::Usage(format!("{origin}: {m}")))?;
    }
    if let Some(max) = args.max_replicas {
        config.max_replica_count = max;
        config.min_replica_count = config.min_replica_count.min(max);
    }
    let scaled = config.time_scaled(args.time_scale).map_err(spec_error)?;
    Ok((origin, scaled))
}

fn load_profile(args: &LabArgs) -> Result<Profile, LabError> {
    let profile = match Profile::builtin(&args.test) {
        Some(p) => p,
        None => {
            let path = std::path::Path::new(&args.test);
            if path.is_file() {
                Profile::from_file(path).map_err(|e| LabError::Usage(e.to_string()))?
            } else {
                return Err(LabError::Usage(format!(
                    "--test {:?} is neither a built-in profile ({}) nor a profile file",
                    args.test,
                    Profile::builtin_names().join(", ")
                )));
            }
        }
    };
    Ok(profile.scale_time(args.time_scale))
}

/// How long to watch after the load for the scale-down: stabilization, enough policy periods to halve
/// from max to min, the cooldown when scaling to zero, and a few polls.
fn default_settle(config: &ScalingConfig) -> Duration {
    let down = &config.scale_down;
    let halvings = (config.max_replica_count.max(2) as f64).log2().ceil() as u32;
    let mut settle =
        down.stabilization_window + down.longest_period() * halvings + config.polling_interval * 4;
    if config.min_replica_count == 0 {
        settle += config.cooldown_period;
    }
    settle.max(Duration::from_secs(5)) + Duration::from_secs(3)
}

/// An `external-push` trigger's StreamIsActive: the metadata it is opened with, and its latest answer.
type PushChannel = (
    Arc<Mutex<HashMap<String, String>>>,
    Arc<Mutex<Option<bool>>>,
);

/// The shared state between the control loop, the live view and the replica monitor.
#[derive(Debug, Default)]
pub struct Shared {
    pub last_decision: Option<Decision>,
    pub simulated_replicas: Option<u32>,
}

/// The lab's [`ReplicaSource`]: replicas as the pool and the controller see them.
struct LabSource {
    pool: Option<ReplicaPool>,
    shared: Arc<Mutex<Shared>>,
}

impl ReplicaSource for LabSource {
    fn observe(&self) -> BoxFuture<'_, Result<ReplicaSnapshot, MonitorError>> {
        Box::pin(async move {
            let shared = self.shared.lock().expect("shared lock");
            let desired = shared.last_decision.as_ref().map(|d| d.desired);
            let detail = shared
                .last_decision
                .as_ref()
                .map(|d| format!("decision at {:.3}s: {d}", d.at.as_secs_f64()));
            let (current, ready) = match &self.pool {
                Some(pool) => {
                    let s = pool.snapshot();
                    (Some(s.current), Some(s.ready))
                }
                None => (shared.simulated_replicas, None),
            };
            Ok(ReplicaSnapshot {
                desired,
                current,
                ready,
                detail,
                source: "lab".into(),
            })
        })
    }

    fn name(&self) -> String {
        "lab".into()
    }
}

/// Run the lab until the profile and the settle phase end or `shutdown` is cancelled.
pub async fn run_with(args: LabArgs, shutdown: CancellationToken) -> Result<LabOutcome, LabError> {
    let (origin, config) = load_scaledobject(&args)?;
    let profile = load_profile(&args)?;
    let live_mode = LiveMode::parse(&args.live);
    let settle = args.settle.unwrap_or_else(|| default_settle(&config));
    std::fs::create_dir_all(&args.out).map_err(|source| LabError::Io {
        path: args.out.display().to_string(),
        source,
    })?;

    let mut view = LabView::new(
        live_mode,
        &config,
        &origin,
        &profile,
        args.time_scale,
        args.no_spawn,
    );
    view.banner();
    if let Some(max) = args.max_replicas {
        view.note(&format!(
            "--max-replicas {max}: maxReplicaCount overridden for this machine (the ScaledObject says otherwise)"
        ));
    }

    // --- children ------------------------------------------------------------------------------------
    let targets = TargetSet::default();
    let mut scaler_process: Option<ChildProcess> = None;
    let pool: Option<ReplicaPool>;
    let scaler_addr: String;
    if args.no_spawn {
        for url in &args.consumer_url {
            targets
                .add(url)
                .map_err(|e| LabError::Usage(format!("--consumer-url: {e}")))?;
        }
        scaler_addr = args.scaler_addr.clone().unwrap_or_default();
        pool = None;
    } else {
        let scaler_bin = locate_binary(args.scaler_bin.as_deref(), "scaler");
        let scaler_args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let scaler = ChildProcess::start(
            "scaler",
            &scaler_bin,
            &scaler_args,
            &["grpc", "http"],
            Duration::from_secs(30),
        )
        .await
        .map_err(|source| LabError::Start {
            what: "the scaler".into(),
            source,
        })?;
        scaler_addr = scaler
            .addr("grpc")
            .map(|a| a.to_string())
            .unwrap_or_default();
        view.note(&format!(
            "scaler pid {} grpc {} http {}",
            scaler.pid,
            scaler_addr,
            scaler
                .addr("http")
                .map(|a| a.to_string())
                .unwrap_or_default()
        ));
        scaler_process = Some(scaler);
        let consumer_bin = locate_binary(args.consumer_bin.as_deref(), "consumer");
        if !consumer_bin.is_file() {
            if let Some(s) = scaler_process.take() {
                s.stop(Duration::from_secs(5)).await;
            }
            return Err(LabError::Usage(format!(
                "consumer binary not found at {} (build it with `cargo build -p consumer`, or pass --consumer-bin)",
                consumer_bin.display()
            )));
        }
        let p = ReplicaPool::new(
            ReplicaTemplate {
                binary: consumer_bin,
                extra_args: args.consumer_args.clone(),
                grace: Duration::from_secs(10),
                start_timeout: Duration::from_secs(30),
            },
            targets.clone(),
        );
        // The Deployment starts at the HPA's minimum.
        let initial = config.hpa_min_replicas();
        p.scale_to(initial);
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.snapshot().ready < initial && Instant::now() < deadline && !shutdown.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if p.snapshot().ready < initial {
            let problems = p.snapshot().problems.join("\n");
            p.shutdown().await;
            if let Some(s) = scaler_process.take() {
                s.stop(Duration::from_secs(5)).await;
            }
            return Err(LabError::Usage(format!(
                "the first consumer replica did not become ready: {problems}"
            )));
        }
        view.note(&format!(
            "{initial} consumer replica(s) ready: {}",
            p.snapshot().ready_urls.join(", ")
        ));
        pool = Some(p);
    }

    let link = ScalerLink::new(&scaler_addr, &config.name, Duration::from_secs(2))
        .map_err(LabError::Usage)?;
    let shared = Arc::new(Mutex::new(Shared {
        last_decision: None,
        simulated_replicas: pool.is_none().then_some(config.hpa_min_replicas()),
    }));
    let decisions: Arc<Mutex<Vec<DecisionRecord>>> = Arc::default();
    let epoch = Instant::now();
    let stop_control = CancellationToken::new();
    // Set once the engine reports an interval past the profile's end: only then may the watch be cut short.
    let load_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The load engine stops at Ctrl-C, or once the scale-down after the load is complete (cancelling
    // after the load phase only shortens the watch; it does not mark the run interrupted).
    let load_shutdown = shutdown.child_token();

    // --- push watchers (external-push: StreamIsActive) --------------------------------------------------
    let wake = Arc::new(Notify::new());
    let mut push_state: HashMap<String, PushChannel> = HashMap::new();
    let ready_urls = |pool: &Option<ReplicaPool>| pool.as_ref().map(|p| p.snapshot().ready_urls);
    for trigger in config.triggers.iter().filter(|t| t.kind == "external-push") {
        let urls = ready_urls(&pool);
        let metadata = Arc::new(Mutex::new(local_metadata(
            trigger,
            &scaler_addr,
            urls.as_deref(),
            config.time_scale,
        )));
        let latest = Arc::new(Mutex::new(None));
        tokio::spawn(link.clone().watch_push(
            metadata.clone(),
            latest.clone(),
            wake.clone(),
            stop_control.clone(),
        ));
        push_state.insert(trigger.name.clone(), (metadata, latest));
    }

    // --- the control loop (KEDA poll + HPA sync at pollingInterval) --------------------------------------
    let control = {
        let config = config.clone();
        let pool = pool.clone();
        let shared = shared.clone();
        let decisions = decisions.clone();
        let stop = stop_control.clone();
        let link = link.clone();
        let wake = wake.clone();
        let scaler_addr = scaler_addr.clone();
        let log_path = args.out.join("decisions.jsonl");
        let load_over = load_over.clone();
        let settle_done = load_shutdown.clone();
        tokio::spawn(async move {
            let mut controller = Controller::new(config.clone());
            let mut log = std::fs::File::create(&log_path).ok();
            loop {
                let snapshot = pool.as_ref().map(|p| {
                    p.reap_dead();
                    p.snapshot()
                });
                let (current, ready) = match &snapshot {
                    Some(s) => (s.current, s.ready),
                    None => {
                        let simulated = shared
                            .lock()
                            .expect("shared")
                            .simulated_replicas
                            .unwrap_or(1);
                        (simulated, simulated)
                    }
                };
                let urls = snapshot.as_ref().map(|s| s.ready_urls.clone());
                // All triggers are asked at once: one slow source must not delay the others' readings.
                let asks = config.triggers.iter().map(|trigger| {
                    let metadata =
                        local_metadata(trigger, &scaler_addr, urls.as_deref(), config.time_scale);
                    let pushed = push_state.get(&trigger.name).and_then(|(m, latest)| {
                        *m.lock().expect("metadata lock") = metadata.clone();
                        *latest.lock().expect("push lock")
                    });
                    let link = &link;
                    async move { link.observe(trigger, &metadata, pushed).await }
                });
                let observations = futures::future::join_all(asks).await;
                let decision = controller.step(&StepInput {
                    now: epoch.elapsed(),
                    current_replicas: current,
                    ready_replicas: ready,
                    observations,
                });
                let record = DecisionRecord::from_decision(&decision, ready);
                if let Some(file) = log.as_mut() {
                    let _ = writeln!(
                        file,
                        "{}",
                        serde_json::to_string(&record).unwrap_or_default()
                    );
                }
                if decision.desired != decision.current {
                    tracing::debug!(
                        t_s = record.t_s,
                        current = decision.current,
                        desired = decision.desired,
                        reason = %decision,
                        "scaling decision"
                    );
                }
                decisions.lock().expect("decisions").push(record);
                match &pool {
                    Some(pool) if decision.desired != decision.current => {
                        pool.scale_to(decision.desired)
                    }
                    Some(_) => {}
                    None => {
                        shared.lock().expect("shared").simulated_replicas = Some(decision.desired)
                    }
                }
                // After the load, stop watching once the target is back at its resting count (KEDA's
                // idle/zero count or the HPA minimum) with nothing left to drain: the cycle is complete.
                let resting =
                    config
                        .idle_replica_count
                        .unwrap_or(if config.min_replica_count == 0 {
                            0
                        } else {
                            config.hpa_min_replicas()
                        });
                let settled = load_over.load(std::sync::atomic::Ordering::Relaxed)
                    && decision.desired == decision.current
                    && decision.current <= resting
                    && snapshot.as_ref().is_none_or(|s| s.draining == 0);
                let at_idle = decision.desired <= resting && resting == 0;
                shared.lock().expect("shared").last_decision = Some(decision);
                if settled {
                    settle_done.cancel();
                }
                // Next poll after pollingInterval. A StreamIsActive push wakes the loop early only while the
                // target is idle (at zero): KEDA uses pushes for activation; the HPA keeps its own pace.
                let next_poll = tokio::time::Instant::now() + config.polling_interval;
                let stopped = loop {
                    tokio::select! {
                        _ = stop.cancelled() => break true,
                        _ = tokio::time::sleep_until(next_poll) => break false,
                        _ = wake.notified() => {
                            if at_idle {
                                break false;
                            }
                        }
                    }
                };
                if stopped {
                    break;
                }
            }
        })
    };

    // --- load + live view ----------------------------------------------------------------------------
    let (progress_tx, mut progress_rx) = mpsc::channel(64);
    let monitor: Arc<dyn ReplicaSource> = Arc::new(LabSource {
        pool: pool.clone(),
        shared: shared.clone(),
    });
    let opts = RunOptions {
        interval: Duration::from_secs(1),
        monitor_interval: Duration::from_millis(500),
        watch_after: settle,
        ..RunOptions::default()
    };
    let load = tokio::spawn(run_load(
        profile.clone(),
        targets.clone(),
        opts,
        Some(monitor),
        Some(progress_tx),
        load_shutdown.clone(),
    ));
    let profile_end = profile.duration().as_secs_f64();
    while let Some(stats) = progress_rx.recv().await {
        if stats.start_s >= profile_end {
            load_over.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let pool_snapshot = pool.as_ref().map(|p| p.snapshot());
        let decision = shared.lock().expect("shared").last_decision.clone();
        view.tick(&stats, decision.as_ref(), pool_snapshot.as_ref());
    }
    let report = generator::report::Report::assemble(
        load.await
            .map_err(|e| LabError::Usage(format!("load task failed: {e}")))??,
    );

    // --- shutdown: stop deciding, then stop every child ---------------------------------------------
    stop_control.cancel();
    let _ = control.await;
    let pids = {
        let mut pids = pool.as_ref().map(|p| p.pids()).unwrap_or_default();
        if let Some(p) = &pool {
            p.shutdown().await;
        }
        if let Some(s) = scaler_process.take() {
            pids.push(s.pid);
            s.stop(Duration::from_secs(10)).await;
        }
        pids
    };
    let decisions = decisions.lock().expect("decisions").clone();
    let final_snapshot = pool.as_ref().map(|p| p.snapshot());

    // --- report ----------------------------------------------------------------------------------------
    let report_path = args.out.join("report.json");
    let svg_path = report
        .write_files(&report_path)
        .map_err(|source| LabError::Io {
            path: report_path.display().to_string(),
            source,
        })?;
    let summary = view.finish(
        &report,
        &decisions,
        pool.as_ref().map(|p| p.stop_counts()),
        final_snapshot.as_ref(),
    );
    let triggers_path = args.out.join("triggers.svg");
    std::fs::write(
        &triggers_path,
        chart::render(
            &decisions,
            &format!("{}: triggers and replicas", config.name),
        ),
    )
    .map_err(|source| LabError::Io {
        path: triggers_path.display().to_string(),
        source,
    })?;
    let summary_path = args.out.join("summary.txt");
    std::fs::write(&summary_path, &summary).map_err(|source| LabError::Io {
        path: summary_path.display().to_string(),
        source,
    })?;
    println!("{summary}");
    println!(
        "report: {}  charts: {} {}  decisions: {}",
        report_path.display(),
        svg_path.display(),
        triggers_path.display(),
        args.out.join("decisions.jsonl").display()
    );
    let exit_code = if shutdown.is_cancelled() {
        130
    } else {
        report.exit_code
    };
    Ok(LabOutcome {
        exit_code,
        report,
        decisions,
        pids,
        out_dir: args.out.clone(),
    })
}
