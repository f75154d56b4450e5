//! One run of the lab and its supervision. Every child (the scaler, each consumer replica) is registered from spawn to
//! reap, and every way out of a run passes through one stop of all of them: the end of the profile, an error at any
//! step after the first spawn, and interrupts. The first SIGINT/SIGTERM stops the load, drains the children (SIGTERM,
//! then SIGKILL after the grace) and writes the partial report; a second one SIGKILLs every child at once and the
//! lab exits shortly after. Whatever happens, the registry's children are SIGKILLed before [`run`] returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use autoscaler::ScalingConfig;
use load::engine::{RunOptions, run_load};
use load::monitor::ReplicaSource;
use load::profile::Profile;
use load::report::Report;
use load::targets::TargetSet;

use crate::chaos::{ChaosRun, ScalerSlot};
use crate::children::Children;
use crate::control::{Control, LabSource, Shared};
pub use crate::observe::{LiveInterval, RunHooks, RunObserver};
use crate::process::Binaries;
use crate::replicas::{ReplicaPool, ReplicaTemplate};
use crate::scaling::{Recorded, SloChoice, build_timeline, replica_records};
use crate::setup::{default_settle, load_profile, load_scaledobject};
use crate::start::{START_TIMEOUT, first_replicas, start_scaler};
use crate::view::{DecisionRecord, LabView, LiveMode};
use crate::{LabArgs, LabError, LabOutcome, chart};

/// After a second interrupt killed every child, how long the run may take to reap them and write its partial report
/// before the lab exits without it.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Run the lab as the `lab` binary does, with SIGINT/SIGTERM handling; returns the process exit code
/// (docs/exit-codes.md).
pub async fn run(args: LabArgs) -> Result<i32, LabError> {
    run_hooked(args, RunHooks::default()).await
}

/// [`run`] with hooks: SIGINT/SIGTERM handling, then [`run_observed`] (the Kafka scenario takes no hooks).
pub async fn run_hooked(args: LabArgs, hooks: RunHooks) -> Result<i32, LabError> {
    run_signalled(|interrupt, registry| async move {
        if args.scenario == "kafka" {
            crate::kafka::run_supervised(args, interrupt, &registry)
                .await
                .map(|o| o.exit_code)
        } else {
            run_observed(args, interrupt, &registry, hooks)
                .await
                .map(|o| o.exit_code)
        }
    })
    .await
}

/// A run under the `lab` binary's signal handling: `start` gets the interrupt (the first SIGINT/SIGTERM) and the
/// registry of children a second one kills at once.
pub async fn run_signalled<F, Fut>(start: F) -> Result<i32, LabError>
where
    F: FnOnce(CancellationToken, procs::Registry) -> Fut,
    Fut: std::future::Future<Output = Result<i32, LabError>>,
{
    let interrupt = CancellationToken::new();
    let immediate = CancellationToken::new();
    let registry = procs::Registry::new();
    // Installed before the first child is spawned: from here on no signal ends the lab without its children.
    let signals = procs::Signals::install()
        .map_err(|e| LabError::Runtime(format!("cannot watch SIGINT/SIGTERM: {e}")))?;
    let watcher = tokio::spawn(crate::signals::watch(
        signals,
        interrupt.clone(),
        immediate.clone(),
        registry.clone(),
    ));
    let run = start(interrupt, registry.clone());
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        _ = immediate.cancelled() => match tokio::time::timeout(AFTER_KILL, &mut run).await {
            Ok(result) => result,
            Err(_) => Err(LabError::Interrupted),
        },
    };
    watcher.abort();
    // Nothing outlives the lab, whichever way the run ended (an abandoned run's replica tasks included).
    registry.kill_all();
    // The run future, abandoned after a second interrupt, is dropped on return: a broker the lab started goes with
    // it (SIGKILL in its drop).
    result
}

/// Run the lab until the profile and the settle phase end or `interrupt` is cancelled; every child is stopped before
/// this returns, on every path.
pub async fn run_with(args: LabArgs, interrupt: CancellationToken) -> Result<LabOutcome, LabError> {
    let registry = procs::Registry::new();
    let outcome = run_supervised(args, interrupt, &registry).await;
    registry.kill_all();
    outcome
}

/// [`run_with`] with the caller's registry of children (the `lab` binary SIGKILLs them on a second interrupt).
pub async fn run_supervised(
    args: LabArgs,
    interrupt: CancellationToken,
    registry: &procs::Registry,
) -> Result<LabOutcome, LabError> {
    run_observed(args, interrupt, registry, RunHooks::default()).await
}

/// [`run_supervised`] with an observer of its progress and a live rate control.
pub async fn run_observed(
    args: LabArgs,
    interrupt: CancellationToken,
    registry: &procs::Registry,
    hooks: RunHooks,
) -> Result<LabOutcome, LabError> {
    let (origin, config) = load_scaledobject(&args)?;
    let profile = load_profile(&args)?;
    crate::kafka::refuse_broker_faults(&profile.chaos)?;
    let slo = SloChoice::resolve(args.slo.as_deref())?;
    let binaries = if args.no_spawn {
        None
    } else {
        Some(Binaries::locate(&args)?)
    };
    // The flag wins over the profile's `chaos_thresholds`.
    let thresholds = match (&args.chaos_threshold, &profile.chaos_thresholds) {
        (Some(text), _) => Some(("--chaos-threshold", text.as_str())),
        (None, Some(text)) => Some(("the profile's chaos_thresholds", text.as_str())),
        (None, None) => None,
    };
    let chaos = ChaosRun::new(
        &profile.chaos,
        thresholds,
        args.restart_backoff.mul_f64(args.time_scale),
        args.time_scale,
    )?;
    // Faults may come from outside (the console): every request's outcome is kept so they can be measured.
    let chaos = if hooks.chaos.is_some() {
        chaos.with_request_log()
    } else {
        chaos
    };
    let settle = args.settle.unwrap_or_else(|| default_settle(&config));
    std::fs::create_dir_all(&args.out).map_err(|source| LabError::Io {
        path: args.out.display().to_string(),
        source,
    })?;

    let mut view = LabView::new(
        LiveMode::parse(&args.live),
        &config,
        &origin,
        &profile,
        args.time_scale,
        args.no_spawn,
    );
    for line in &hooks.banner {
        view.add_header(line);
    }
    view.banner();
    view.note(&format!(
        "scaling report: {}; phases per scale event at the end",
        slo.describe()
    ));
    if let Some(max) = args.max_replicas {
        view.note(&format!(
            "--max-replicas {max}: maxReplicaCount overridden for this machine (the ScaledObject says otherwise)"
        ));
    }

    let mut children = Children {
        registry: registry.clone(),
        scaler: ScalerSlot::default(),
        pool: None,
    };
    let plan = Plan {
        args: &args,
        config: &config,
        profile: &profile,
        settle,
        interrupt: &interrupt,
        slo: &slo,
        hooks: &hooks,
        chaos: &chaos,
    };
    let ran = plan.drive(binaries, &mut view, &mut children).await;
    // One stop for every path: the run ended, failed at any step, or was interrupted.
    let pids = children.stop().await;
    let (mut report, decisions, clock) = ran?;
    let pool = children.pool.as_ref();
    let final_snapshot = pool.map(|p| p.snapshot());

    // --- the scaling report: the run as the timeline crate reads it -------------------------------------
    let replicas = pool
        .map(|p| replica_records(&p.lives(), clock.epoch))
        .unwrap_or_default();
    let load_end_s = report
        .scaling
        .as_ref()
        .map_or(report.duration_s, |s| s.load_end_s);
    let timeline = build_timeline(&Recorded {
        intervals: &report.intervals,
        decisions: &decisions,
        replicas: &replicas,
        load_start_s: clock.load_start_s,
        load_end_s: Some(load_end_s),
        config: &config,
    });
    let analysis = timeline::analyse(
        &timeline,
        Some(&slo.slo),
        &crate::scaling::options(args.time_scale),
    );
    if let Some(scaling) = report.scaling.as_mut() {
        // The lab's own analysis replaces the generator's (which only saw replica observations): exact decision
        // times from the controller's log, replica lives from the pool. `apply_analysis` also redefines the
        // "during scale-up" intervals by it, so that figure agrees with the event table.
        scaling.apply_analysis(analysis.clone(), &report.intervals);
        scaling.decisions_from = Some("the controller's log".to_string());
        scaling.inputs_missing.clear();
    }
    let lives = pool.map(|p| p.lives()).unwrap_or_default();
    let load_start = clock.epoch + Duration::from_secs_f64(clock.load_start_s);
    chaos.apply(
        &mut report,
        &crate::chaos::measure::Measured {
            epoch: clock.epoch,
            load_start,
            load_end: load_start + Duration::from_secs_f64(load_end_s),
            decisions: &decisions,
            lives: &lives,
            slo: &slo.slo,
            time_scale: args.time_scale,
        },
    );

    // --- results ---------------------------------------------------------------------------------------
    let io = |path: &PathBuf| {
        let path = path.display().to_string();
        move |source| LabError::Io { path, source }
    };
    let report_path = args.out.join("report.json");
    let svg_path = report.write_files(&report_path).map_err(io(&report_path))?;
    let mut summary = view.finish(
        &report,
        &decisions,
        pool.map(|p| p.stop_counts()),
        final_snapshot.as_ref(),
    );
    summary.push_str(&crate::scaling::render_lab_section(
        &analysis,
        &slo,
        args.no_spawn,
    ));
    if let Some(chaos) = &report.chaos {
        summary.push_str(&chaos.render());
    }
    let triggers_path = args.out.join("triggers.svg");
    std::fs::write(
        &triggers_path,
        chart::render(
            &decisions,
            &format!("{}: triggers and replicas", config.name),
        ),
    )
    .map_err(io(&triggers_path))?;
    let summary_path = args.out.join("summary.txt");
    std::fs::write(&summary_path, &summary).map_err(io(&summary_path))?;
    println!("{summary}");
    println!(
        "report: {}  charts: {} {}  decisions: {}",
        report_path.display(),
        svg_path.display(),
        triggers_path.display(),
        args.out.join("decisions.jsonl").display()
    );
    let exit_code = if interrupt.is_cancelled() {
        contract::exit::INTERRUPTED
    } else {
        report.exit_code
    };
    Ok(LabOutcome {
        exit_code,
        report,
        decisions,
        pids,
        out_dir: args.out.clone(),
        timeline,
        load_start_s: clock.load_start_s,
    })
}

/// What the live view reads while the load runs.
struct Live<'a> {
    pool: &'a Option<ReplicaPool>,
    shared: &'a Arc<Mutex<Shared>>,
    decisions: &'a Arc<Mutex<Vec<DecisionRecord>>>,
    epoch: Instant,
}

/// A run's inputs, resolved.
struct Plan<'a> {
    args: &'a LabArgs,
    config: &'a ScalingConfig,
    profile: &'a Profile,
    settle: Duration,
    interrupt: &'a CancellationToken,
    slo: &'a SloChoice,
    hooks: &'a RunHooks,
    chaos: &'a ChaosRun,
}

/// The two clocks of a run: the control loop's epoch (the decision log's and the pool's times) and when the load
/// started on it (the intervals' zero).
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
    load_start_s: f64,
}

impl Plan<'_> {
    /// Start the children (into `children`, so the caller stops them whatever this returns), then decide and load
    /// until the profile and the settle phase end.
    async fn drive(
        &self,
        binaries: Option<Binaries>,
        view: &mut LabView,
        children: &mut Children,
    ) -> Result<(Report, Vec<DecisionRecord>, Clock), LabError> {
        let targets = TargetSet::default();
        let scaler_addr = match binaries {
            None => {
                for url in &self.args.consumer_url {
                    targets
                        .add(url)
                        .map_err(|e| LabError::Usage(format!("--consumer-url: {e}")))?;
                }
                self.args.scaler_addr.clone().unwrap_or_default()
            }
            Some(binaries) => {
                self.start_children(binaries, &targets, view, children)
                    .await?
            }
        };
        let pool = children.pool.clone();

        // The load engine stops at an interrupt, or once the scale-down after the load is complete (cancelling
        // after the load phase only shortens the watch; it does not mark the run interrupted).
        let load_shutdown = self.interrupt.child_token();
        let epoch_wall = SystemTime::now();
        let control = Control::start(
            self.config,
            pool.clone(),
            scaler_addr,
            &self.args.out,
            load_shutdown.clone(),
        )?;
        let epoch = control.epoch;
        // The faults, timed from the load's start (now), beside the control loop.
        let chaos_targets = crate::chaos::Targets {
            pool: pool.clone(),
            scaler: children.scaler.clone(),
            broker: None,
            restart_backoff: self.chaos.restart_backoff,
        };
        if let Some(port) = &self.hooks.chaos {
            port.open(chaos_targets.clone(), self.chaos.clone());
        }
        let chaos = self.chaos.spawn(chaos_targets, control.stop.clone());

        let loaded = self
            .load(
                targets,
                Live {
                    pool: &pool,
                    shared: &control.shared,
                    decisions: &control.decisions,
                    epoch,
                },
                &control.load_over,
                load_shutdown,
                view,
            )
            .await;
        // Stop deciding before anything is stopped, so no decision starts a replica during the shutdown.
        control.stop.cancel();
        if let Some(port) = &self.hooks.chaos {
            port.close();
        }
        let decisions = control.decisions.clone();
        let controlled = control.task.finish().await;
        if let Some(chaos) = chaos {
            chaos.abort();
        }
        let (report, started_at) = loaded?;
        controlled?;
        let decisions = decisions.lock().expect("decisions").clone();
        // The engine's own start time, on the epoch's clock (both read the wall clock once, a few ms apart).
        let load_start_s = started_at
            .duration_since(epoch_wall)
            .map_or(0.0, |d| d.as_secs_f64());
        Ok((
            report,
            decisions,
            Clock {
                epoch,
                load_start_s,
            },
        ))
    }

    /// Start the scaler and the first consumer replica(s); returns the scaler's gRPC address.
    async fn start_children(
        &self,
        binaries: Binaries,
        targets: &TargetSet,
        view: &mut LabView,
        children: &mut Children,
    ) -> Result<String, LabError> {
        let scaler = start_scaler(
            binaries.scaler.clone(),
            &[],
            &children.scaler,
            &children.registry,
            self.interrupt,
        )
        .await?;
        view.note(&format!(
            "scaler pid {} grpc {} http {}",
            scaler.pid, scaler.grpc, scaler.http
        ));

        let pool = ReplicaPool::new(
            ReplicaTemplate {
                binary: binaries.consumer,
                extra_args: self.args.consumer_args.clone(),
                grace: Duration::from_secs(10),
                start_timeout: START_TIMEOUT,
                children: children.registry.clone(),
            },
            targets.clone(),
        );
        children.pool = Some(pool.clone());
        // The Deployment starts at the HPA's minimum.
        let initial = self.config.hpa_min_replicas();
        first_replicas(&pool, initial, self.interrupt).await?;
        let snapshot = pool.snapshot();
        view.note(&format!(
            "{initial} consumer replica(s) ready: {} (pid {})",
            snapshot.ready_urls.join(", "),
            pool.pids()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(scaler.grpc)
    }

    /// Run the load engine against the ready replicas and draw the live view until the engine returns.
    async fn load(
        &self,
        targets: TargetSet,
        live: Live<'_>,
        load_over: &AtomicBool,
        shutdown: CancellationToken,
        view: &mut LabView,
    ) -> Result<(Report, SystemTime), LabError> {
        let Live {
            pool,
            shared,
            decisions,
            epoch,
        } = live;
        let (progress_tx, mut progress_rx) = mpsc::channel(64);
        let monitor: Arc<dyn ReplicaSource> = Arc::new(LabSource {
            pool: pool.clone(),
            shared: shared.clone(),
        });
        let opts = RunOptions {
            interval: Duration::from_secs(1),
            monitor_interval: Duration::from_millis(500),
            watch_after: self.settle,
            rate: self.hooks.rate.clone(),
            request_log: self.chaos.request_log.clone(),
            ..RunOptions::default()
        };
        // Until the engine reports its start, the live view takes the load to start now.
        let approx_load_start_s = epoch.elapsed().as_secs_f64();
        let options = crate::scaling::options(self.args.time_scale);
        let mut intervals = Vec::new();
        let load = tokio::spawn(run_load(
            self.profile.clone(),
            targets,
            opts,
            Some(monitor),
            Some(progress_tx),
            shutdown,
        ));
        let profile_end = self.profile.duration().as_secs_f64();
        let (mut decisions_seen, mut notes_seen) = (0, 0);
        while let Some(stats) = progress_rx.recv().await {
            if stats.start_s >= profile_end {
                load_over.store(true, Ordering::Relaxed);
            }
            let pool_snapshot = pool.as_ref().map(|p| p.snapshot());
            let decision = shared.lock().expect("shared").last_decision.clone();
            let now_s = stats.end_s;
            intervals.push(stats.clone());
            // The phase in progress, from the timeline as known now (the same analysis as the end of the run).
            let phase = {
                let decisions = decisions.lock().expect("decisions").clone();
                let replicas = pool
                    .as_ref()
                    .map(|p| replica_records(&p.lives(), epoch))
                    .unwrap_or_default();
                let tl = build_timeline(&Recorded {
                    intervals: &intervals,
                    decisions: &decisions,
                    replicas: &replicas,
                    load_start_s: approx_load_start_s,
                    load_end_s: (now_s >= profile_end).then_some(profile_end),
                    config: self.config,
                });
                timeline::phase_in_progress(&tl, now_s, Some(&self.slo.slo), &options)
            };
            for line in self.chaos.new_lines() {
                view.note(&line);
            }
            if let Some(observer) = &self.hooks.observer {
                let decisions = decisions.lock().expect("decisions").clone();
                let notes = view.notes();
                observer.interval(&LiveInterval {
                    stats: &stats,
                    pool: pool_snapshot.as_ref(),
                    new_decisions: &decisions[decisions_seen.min(decisions.len())..],
                    last_decision: decisions.last(),
                    new_notes: &notes[notes_seen.min(notes.len())..],
                    load_start_s: approx_load_start_s,
                    phase: phase.as_deref(),
                    profile_end_s: profile_end,
                });
                (decisions_seen, notes_seen) = (decisions.len(), notes.len());
            }
            view.tick(
                &stats,
                decision.as_ref(),
                pool_snapshot.as_ref(),
                phase.as_deref(),
            );
        }
        let data = load
            .await
            .map_err(|e| LabError::Runtime(format!("the load engine stopped: {e}")))??;
        let started_at = data.started_at;
        Ok((load::report::Report::assemble(data), started_at))
    }
}
