//! The Kafka scenario (`lab --scenario kafka`): a broker (started with scripts/kafka/broker.sh in a temporary directory,
//! or the one given with --kafka-brokers), the topic and `<topic>.processed`, consumer replicas in Kafka mode as one
//! consumer group, the scaler's `kafka` trigger asked as KEDA would, and the generator's Kafka producer. The lag rises,
//! the controller scales up (capped at the partition count by the trigger's value), the lag drains, it scales back;
//! at the end `verify --processed` runs in-process. The broker JVM is not a child of the lab (the script detaches
//! it), so [`Broker`] stops it on every path: gracefully in the cleanup, SIGKILL when dropped (a double interrupt
//! abandons the run future, which drops it). [`broker`] starts and stops the broker and creates the topics; [`faults`]
//! takes the run's `--chaos` faults (`stop-broker`, replica and scaler faults) and measures each one, [`lag`] samples
//! the group's lag meanwhile; [`report`] writes report.json (the producer's report, verify's, the faults); [`trigger`]
//! reads the `kafka` trigger and prints decisions; this module runs the scenario.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use kafka_load::{ProduceArgs, ProduceReport, VerifyArgs, VerifyReport, verify_report};
use load::report::ChaosReport;
use load::targets::TargetSet;

use crate::chaos::{BrokerSlot, ChaosRun, ScalerSlot, Targets};
use crate::control::Control;
use crate::process::locate_binary;
use crate::replicas::{ReplicaPool, ReplicaTemplate};
use crate::setup::{BUILTIN_KAFKA_SCALEDOBJECT, KAFKA_SCALEDOBJECT_PATH, default_settle};
use crate::start::{START_TIMEOUT, first_replicas, start_scaler};
use crate::view::DecisionRecord;
use crate::{LabArgs, LabError};

mod broker;
mod faults;
mod lag;
mod report;
mod trigger;

pub use broker::PARTITIONS;
use broker::{Broker, create_topics, start_broker};
pub use faults::refuse_broker_faults;
pub use trigger::describe;
use trigger::kafka_trigger;

/// How often the group's lag is sampled while faults run.
const LAG_EVERY: Duration = Duration::from_millis(250);

/// What a Kafka run produced.
#[derive(Debug)]
pub struct KafkaOutcome {
    pub exit_code: i32,
    pub decisions: Vec<DecisionRecord>,
    /// Every child pid the lab spawned (scaler, replicas).
    pub pids: Vec<u32>,
    /// The broker JVM's pid when the lab started it.
    pub broker_pid: Option<u32>,
    pub verify: Option<VerifyReport>,
    pub test_run: String,
    /// The faults and what each cost (report.json's `chaos`), when `--chaos` gave any.
    pub chaos: Option<ChaosReport>,
}

/// Parse the generator's producer flags as its CLI does (so defaults stay the generator's).
#[derive(clap::Parser)]
struct ProduceCli {
    #[command(flatten)]
    args: ProduceArgs,
}

/// Run the Kafka scenario; every child, and the broker the lab started, is stopped before this returns.
pub async fn run_supervised(
    args: LabArgs,
    interrupt: CancellationToken,
    registry: &procs::Registry,
) -> Result<KafkaOutcome, LabError> {
    let chaos = ChaosRun::new(
        &faults::parse_faults(&args.chaos, load_length(&args), args.time_scale)?,
        args.chaos_threshold
            .as_deref()
            .map(|t| ("--chaos-threshold", t)),
        args.restart_backoff.mul_f64(args.time_scale),
        args.time_scale,
    )?;
    let mut broker = None;
    let mut broker_slot: Option<BrokerSlot> = None;
    // Shared with the scaler faults, which may kill it and start it again on the same ports.
    let scaler = ScalerSlot::default();
    let mut pool: Option<ReplicaPool> = None;
    let result = drive(
        &args,
        &interrupt,
        registry,
        Slots {
            broker: &mut broker,
            broker_faults: &mut broker_slot,
            scaler: &scaler,
            pool: &mut pool,
        },
        &chaos,
    )
    .await;
    // One stop for every path: replicas, the scaler, then the broker.
    let mut pids = pool.as_ref().map(|p| p.pids()).unwrap_or_default();
    if let Some(pool) = &pool {
        pool.shutdown().await;
    }
    if let Some(mut scaler) = scaler.take() {
        pids.push(scaler.pid());
        scaler.stop(Duration::from_secs(10)).await;
    }
    // No fault after this; a broker still down from one is back before the check (which needs it).
    if let Some(slot) = &broker_slot {
        slot.close(!interrupt.is_cancelled()).await;
    }
    let broker_pid = broker.as_ref().and_then(Broker::pid);
    // The check needs the broker: it runs before the broker stops.
    let result = match result {
        Ok(driven) if !interrupt.is_cancelled() => {
            let verify = verify_report(&VerifyArgs {
                brokers: driven.brokers.clone(),
                topic: driven.topic.clone(),
                test_run: driven.test_run.clone(),
                processed: true,
                timeout: Duration::from_secs(30),
                // The replicas have stopped: what is unprocessed now is the backlog, which the report counts apart.
                processed_wait: Some(Duration::ZERO),
                output: load::output::OutputFormat::Text,
            })
            .await;
            match verify {
                Ok(report) => Ok((driven, Some(report))),
                Err(e) => Err(LabError::Runtime(format!("verify: {e}"))),
            }
        }
        Ok(driven) => Ok((driven, None)),
        Err(e) => Err(e),
    };
    if let Some(b) = broker.as_ref() {
        b.stop().await;
    }
    drop(broker);
    let (driven, verify) = result?;
    let Driven {
        decisions,
        test_run,
        produce,
        ..
    } = &driven;
    let (decisions, test_run) = (decisions.clone(), test_run.clone());
    if let Some(report) = &verify {
        report::print_verify(&args.out, &test_run, report)?;
    }
    let lives = pool.as_ref().map(|p| p.lives()).unwrap_or_default();
    let lag = driven.lag.lock().expect("lag samples").clone();
    let chaos_report = chaos.finish_with(|records| {
        faults::measure(
            records,
            &faults::KafkaRun {
                epoch: driven.epoch,
                produce_start: driven.produce_start,
                produce: produce.as_ref(),
                verify: verify.as_ref(),
                lag: &lag,
                lag_every: LAG_EVERY,
                decisions: &decisions,
                lives: &lives,
                lag_threshold: driven.lag_threshold,
                time_scale: args.time_scale,
            },
        )
    });
    for line in chaos.new_lines() {
        println!("{line}");
    }
    let exit_code = report::conclude(
        &args.out,
        interrupt.is_cancelled(),
        &test_run,
        produce.as_ref(),
        verify.as_ref(),
        chaos_report.as_ref(),
    )?;
    Ok(KafkaOutcome {
        exit_code,
        decisions,
        pids,
        broker_pid,
        verify,
        test_run,
        chaos: chaos_report,
    })
}

/// The load's length in profile time (the `at` of a fault must fall inside it).
fn load_length(args: &LabArgs) -> Duration {
    kafka_load::profiles::builtin(&args.test).map_or(args.kafka_duration, |p| p.duration())
}

/// What [`drive`] fills in as it starts things, so the caller stops them whatever it returns.
struct Slots<'a> {
    broker: &'a mut Option<Broker>,
    broker_faults: &'a mut Option<BrokerSlot>,
    scaler: &'a ScalerSlot,
    pool: &'a mut Option<ReplicaPool>,
}

/// What a finished drive hands to the check and the measurements.
struct Driven {
    decisions: Vec<DecisionRecord>,
    test_run: String,
    brokers: String,
    topic: String,
    /// The control loop's epoch and the producer's start.
    epoch: Instant,
    produce_start: Instant,
    produce: Option<ProduceReport>,
    lag: lag::LagSamples,
    lag_threshold: f64,
}

async fn drive(
    args: &LabArgs,
    interrupt: &CancellationToken,
    registry: &procs::Registry,
    slots: Slots<'_>,
    chaos: &ChaosRun,
) -> Result<Driven, LabError> {
    let Slots {
        broker,
        broker_faults,
        scaler: scaler_slot,
        pool: pool_slot,
    } = slots;
    let (origin, mut config) = crate::setup::load_scaledobject_from(
        args,
        KAFKA_SCALEDOBJECT_PATH,
        BUILTIN_KAFKA_SCALEDOBJECT,
    )?;
    let (group, topic, threshold) = kafka_trigger(&config)?;
    let settle = args.settle.unwrap_or_else(|| default_settle(&config));
    let scaler_bin = locate_binary(args.scaler_bin.as_deref(), "scaler");
    let consumer_bin = locate_binary(args.consumer_bin.as_deref(), "consumer");
    for (bin, name) in [(&scaler_bin, "scaler"), (&consumer_bin, "consumer")] {
        if !bin.is_file() {
            return Err(LabError::Usage(format!(
                "{name} binary not found at {} (build it with `cargo build -p {name}`)",
                bin.display()
            )));
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|source| LabError::Io {
        path: args.out.display().to_string(),
        source,
    })?;
    println!(
        "lab --scenario kafka: {origin} ({} trigger(s), max {} replicas, time scale {})",
        config.triggers.len(),
        config.max_replica_count,
        args.time_scale
    );

    let brokers = match &args.kafka_brokers {
        Some(b) => {
            *broker_faults = Some(BrokerSlot::external(b));
            b.clone()
        }
        None => {
            let b = start_broker(args, broker, interrupt).await?;
            let pid = broker.as_ref().and_then(Broker::pid);
            println!(
                "broker {b} (pid {})",
                pid.map_or("?".into(), |p| p.to_string())
            );
            *broker_faults = broker.as_mut().map(|started| started.fault_slot(&b));
            b
        }
    };
    create_topics(&brokers, &topic).await?;
    println!("topics {topic} and {topic}.processed: {PARTITIONS} partitions each; group {group}");
    // The cluster's address becomes the local broker's, as scalerAddress becomes the local scaler's.
    for trigger in &mut config.triggers {
        if trigger.metadata.contains_key("bootstrapServers") {
            trigger
                .metadata
                .insert("bootstrapServers".into(), brokers.clone());
        }
    }

    let scaler = start_scaler(
        scaler_bin,
        &["--kafka-poll-interval", "1s"],
        scaler_slot,
        registry,
        interrupt,
    )
    .await?;
    println!("scaler pid {} grpc {}", scaler.pid, scaler.grpc);

    let mut extra_args = args.consumer_args.clone();
    extra_args.extend(
        [
            "--kafka-brokers",
            &brokers,
            "--kafka-topic",
            &topic,
            "--kafka-group",
            &group,
            "--kafka-work",
            "io",
            "--kafka-work-ms",
            &args.kafka_work_ms.to_string(),
            // The broker's lowest session timeout instead of Kafka's 45 s, so a killed replica's partitions move
            // to the others within the lab's short runs (6 s, not 45 s, of stalled partitions).
            "--kafka-session-timeout-ms",
            "6000",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let pool = ReplicaPool::new(
        ReplicaTemplate {
            binary: consumer_bin,
            extra_args,
            grace: Duration::from_secs(10),
            start_timeout: START_TIMEOUT,
            children: registry.clone(),
        },
        TargetSet::default(),
    );
    *pool_slot = Some(pool.clone());
    let initial = config.hpa_min_replicas();
    first_replicas(&pool, initial, interrupt).await?;
    println!("{initial} consumer replica(s) ready in group {group}");

    // The KEDA stand-in: the same control loop as the HTTP scenario.
    let settle_done = interrupt.child_token();
    let control = Control::start(
        &config,
        Some(pool.clone()),
        scaler.grpc,
        &args.out,
        settle_done.clone(),
    )?;
    let epoch = control.epoch;
    // Print decisions as they come.
    let cap_value = f64::from(PARTITIONS) * threshold;
    let printer = {
        let decisions = control.decisions.clone();
        let stop = control.stop.clone();
        let chaos = chaos.clone();
        tokio::spawn(async move {
            let mut shown = 0;
            loop {
                let new: Vec<DecisionRecord> =
                    decisions.lock().expect("decisions")[shown..].to_vec();
                for d in &new {
                    println!("{}", describe(d, cap_value));
                }
                for line in chaos.new_lines() {
                    println!("{line}");
                }
                shown += new.len();
                if stop.is_cancelled() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // The producer: a `kafka-*` profile given with --test, or a constant rate, both time-scaled.
    let test_run = kafka_load::produce::fresh_test_run();
    let mut produce: Vec<String> = vec![
        "produce".into(),
        "--brokers".into(),
        brokers.clone(),
        "--topic".into(),
        topic.clone(),
        "--test-run".into(),
        test_run.clone(),
        "--producer".into(),
        "lab".into(),
        "--no-metrics".into(),
        "--quiet".into(),
        "--payload-bytes".into(),
        "256".into(),
    ];
    match kafka_load::profiles::builtin(&args.test) {
        Some(profile) => {
            let secs = (profile.duration().as_secs_f64() * args.time_scale).max(1.0);
            produce.extend([
                "--test".into(),
                args.test.clone(),
                "--duration".into(),
                format!("{secs}s"),
            ]);
        }
        None => {
            let secs = (args.kafka_duration.as_secs_f64() * args.time_scale).max(1.0);
            produce.extend([
                "--rate".into(),
                args.kafka_rate.to_string(),
                "--duration".into(),
                format!("{secs}s"),
            ]);
        }
    }
    let produce_args = ProduceCli::try_parse_from(&produce)
        .map_err(|e| LabError::Usage(format!("producer: {e}")))?
        .args;
    println!("producing test run {test_run}: {}", produce[13..].join(" "));
    let produce_report = args.out.join("produce.json");
    // Idempotent: a send retried across a broker stop is written once (verify's duplicates in the topic stay 0).
    let mut produce_args = produce_args;
    produce_args.idempotent = true;
    produce_args.report = Some(produce_report.clone());
    produce_args.interval = LAG_EVERY;
    // The faults and the lag they are measured by, timed from the producer's start.
    let (lag_task, lag) = if chaos.is_empty() {
        (None, lag::LagSamples::default())
    } else {
        let (task, lag) =
            lag::sample_lag(&brokers, &group, &topic, LAG_EVERY, control.stop.clone());
        (Some(task), lag)
    };
    let produce_start = Instant::now();
    let chaos_task = chaos.spawn(
        Targets {
            pool: Some(pool.clone()),
            scaler: scaler_slot.clone(),
            broker: broker_faults.clone(),
            restart_backoff: chaos.restart_backoff,
        },
        control.stop.clone(),
    );
    let produced = kafka_load::produce_command(produce_args, interrupt.child_token()).await;
    control.load_over.store(true, Ordering::Relaxed);
    let produced = produced.map_err(|e| LabError::Runtime(format!("producer: {e}")));
    if produced.is_ok() {
        println!("producer done; watching the lag drain and the scale-down (at most {settle:?})");
        tokio::select! {
            _ = settle_done.cancelled() => {}
            _ = tokio::time::sleep(settle) => println!("settle time over before the replicas were back at rest"),
        }
    }
    control.stop.cancel();
    let decisions = control.decisions.clone();
    let controlled = control.task.finish().await;
    if let Err(e) = printer.await {
        eprintln!(
            "lab: the decision printer ended early ({e}): some decision lines were not printed"
        );
    }
    if let Some(task) = chaos_task {
        task.abort();
    }
    if let Some(task) = lag_task
        && let Err(e) = task.await
    {
        eprintln!("lab: the lag sampler ended early ({e}): the lag figures end where it stopped");
    }
    produced?;
    controlled?;
    let produce = std::fs::read_to_string(&produce_report)
        .ok()
        .and_then(|text| serde_json::from_str::<ProduceReport>(&text).ok());
    let decisions = decisions.lock().expect("decisions").clone();
    Ok(Driven {
        decisions,
        test_run,
        brokers,
        topic,
        epoch,
        produce_start,
        produce,
        lag,
        lag_threshold: threshold,
    })
}
