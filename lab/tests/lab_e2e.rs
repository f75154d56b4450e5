//! End to end through the library: `lab` with the project's ScaledObject and the demo profile at time scale 0.25
//! starts the real scaler and consumer processes, scales 1 -> at least 2 replicas under load and back to 1
//! after it, leaves no child process behind, and its report's timeline agrees with the controller's log.

use std::time::{Duration, Instant};

use clap::Parser;
use lab::run_with;
use lab::view::DecisionRecord;
use tokio_util::sync::CancellationToken;

use crate::{Wrapper, binary, heavy, process_exists};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scales_up_under_load_and_back_to_one() {
    let _machine = heavy().await;
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    assert!(
        consumer.is_file() && scaler.is_file(),
        "build the binaries first: cargo build -p consumer -p scaler ({} / {})",
        consumer.display(),
        scaler.display()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let scaledobject =
        testkit::workspace_root().join("manifests/components/keda/scaledobject.yaml");
    let args = Wrapper::try_parse_from([
        "lab",
        "--test",
        "demo",
        "--scaledobject",
        scaledobject.to_str().unwrap(),
        "--time-scale",
        "0.25",
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--settle",
        "40s",
        "--live",
        "plain",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(85),
        run_with(args, CancellationToken::new()),
    )
    .await
    .expect("the lab finished within 85 s")
    .expect("the lab ran");
    let elapsed = started.elapsed();
    assert_eq!(outcome.exit_code, 0, "verdict: {}", outcome.report.verdict);

    // Scaled up under load and back to 1 after it, by the controller's own account.
    let decisions = &outcome.decisions;
    assert!(!decisions.is_empty());
    let peak = decisions.iter().map(|d| d.desired).max().unwrap();
    assert!(peak >= 2, "never scaled up: {decisions:#?}");
    let last = decisions.last().unwrap();
    assert_eq!(
        (last.current, last.desired),
        (1, 1),
        "did not return to 1: {}",
        last.reason
    );
    let first_up = decisions
        .iter()
        .find(|d| d.desired > d.current)
        .expect("a scale-up");
    assert!(
        first_up.reason.contains("scale 1 -> "),
        "{}",
        first_up.reason
    );
    let first_down = decisions
        .iter()
        .find(|d| d.desired < d.current)
        .expect("a scale-down");
    assert!(first_down.t_s > first_up.t_s);

    // Every child the lab started is gone (exited and reaped).
    assert!(
        outcome.pids.len() >= 3,
        "scaler + at least 2 replicas: {:?}",
        outcome.pids
    );
    for pid in &outcome.pids {
        assert!(!process_exists(*pid), "child {pid} is still there");
    }

    // The report's timeline agrees with the controller's log: every observation names the decision it
    // saw, that decision is in the log with the same desired count, and the replica counts the timeline
    // shows are counts the controller asked for.
    let scaling = outcome
        .report
        .scaling
        .as_ref()
        .expect("the report has a scaling section");
    assert!(
        scaling.timeline.len() > 10,
        "{} observations",
        scaling.timeline.len()
    );
    let mut matched = 0;
    for point in &scaling.timeline {
        let snapshot = &point.snapshot;
        assert_eq!(snapshot.source, "lab");
        let Some(detail) = &snapshot.detail else {
            continue;
        };
        let at: f64 = detail
            .strip_prefix("decision at ")
            .and_then(|rest| rest.split_once("s:"))
            .and_then(|(t, _)| t.parse().ok())
            .unwrap_or_else(|| panic!("unexpected detail {detail:?}"));
        let record: &DecisionRecord = decisions
            .iter()
            .find(|d| (d.t_s - at).abs() < 0.002)
            .unwrap_or_else(|| panic!("timeline cites a decision at {at}s that the log lacks"));
        assert_eq!(snapshot.desired, Some(record.desired), "at t={}", point.t_s);
        assert!(
            record.t_s <= point.t_s + 0.5,
            "decision from the future at t={}",
            point.t_s
        );
        matched += 1;
    }
    assert!(
        matched > 10,
        "only {matched} timeline points cite a decision"
    );
    let asked: std::collections::BTreeSet<u32> =
        decisions.iter().map(|d| d.desired).chain([1]).collect();
    for point in &scaling.timeline {
        if let Some(current) = point.snapshot.current {
            assert!(
                asked.contains(&current),
                "timeline shows {current} replicas, never asked for"
            );
        }
    }
    let timeline_peak = scaling
        .timeline
        .iter()
        .filter_map(|p| p.snapshot.current)
        .max()
        .unwrap();
    assert!(timeline_peak >= 2, "timeline never shows the scale-up");
    assert_eq!(scaling.timeline.last().unwrap().snapshot.current, Some(1));

    // The files a user gets: the JSON log matches what was returned, the chart and summary exist.
    let log = std::fs::read_to_string(out.path().join("decisions.jsonl")).expect("decisions.jsonl");
    let logged: Vec<DecisionRecord> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON decision"))
        .collect();
    // (serde_json's float parsing is not bit-exact, so compare what a reader of the log relies on.)
    let key = |d: &DecisionRecord| (d.current, d.ready, d.desired, d.active, d.reason.clone());
    assert_eq!(logged.len(), decisions.len());
    for (a, b) in logged.iter().zip(decisions) {
        assert_eq!(key(a), key(b));
        assert!((a.t_s - b.t_s).abs() < 1e-9);
    }
    let svg = std::fs::read_to_string(out.path().join("report.svg")).expect("report.svg");
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "not an SVG"
    );
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).expect("summary.txt");
    assert!(summary.contains("time scale x0.25"), "{summary}");
    assert!(
        summary.contains("scaling decisions (controller log)"),
        "{summary}"
    );

    // The scaling report: at least one scale-up event with an under-provisioned window, whose present phases sum to
    // its total, decided when the controller's log says it scaled.
    let analysis = scaling
        .analysis
        .as_ref()
        .expect("report.json's scaling carries the analysis");
    let scale_ups: Vec<&timeline::ScaleEvent> = analysis
        .events
        .iter()
        .filter(|e| e.kind == timeline::EventKind::ScaleUp && e.under_provisioned_s > 0.0)
        .collect();
    assert!(
        !scale_ups.is_empty(),
        "no under-provisioned scale-up:\n{summary}"
    );
    for e in &scale_ups {
        let total = e.total_s.expect("a total");
        let sum: f64 = e.phases.iter().filter_map(|p| p.duration_s).sum();
        assert!(
            (sum - total).abs() < 1e-6,
            "event {}: {sum} != {total}",
            e.id
        );
        assert!(total > 0.0);
        let Some(decided) = e.phase(timeline::PhaseName::Decision).at_s else {
            continue;
        };
        let (from, to) = (e.from_replicas.unwrap(), e.to_replicas.unwrap());
        let logged = decisions
            .iter()
            .find(|d| ((d.t_s - outcome.load_start_s).max(0.0) - decided).abs() < 1e-6)
            .unwrap_or_else(|| panic!("event {} decided at {decided} s: not in the log", e.id));
        assert_eq!(logged.current, from, "{}", logged.reason);
        assert!(logged.desired > logged.current && logged.desired <= to);
        assert_eq!(e.trigger, logged.winner);
    }
    assert!(outcome.load_start_s >= 0.0 && outcome.load_start_s < 5.0);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json")).expect("report.json"),
    )
    .expect("report.json parses");
    let events = json["scaling"]["events"]
        .as_array()
        .expect("scaling.events");
    assert_eq!(events.len(), analysis.events.len());
    assert!(json["scaling"]["advice"].is_array());
    assert!(
        summary.contains("scaling report (") && summary.contains("SLO p95<500ms,errors<1%"),
        "{summary}"
    );
    assert!(summary.contains("dominant"), "{summary}");
    // The summary's "during scale-up" figure is the analysis's under-provisioned time, never the zero issue 10 found,
    // and decision times are said to come from the controller's log.
    assert!(
        scaling.during_scale_up.intervals > 0,
        "during scale-up reads {} intervals while an event was under-provisioned:\n{summary}",
        scaling.during_scale_up.intervals
    );
    assert!(
        summary.contains("decision times from the controller's log"),
        "{summary}"
    );
    assert!(elapsed < Duration::from_secs(85), "took {elapsed:?}");
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let out = tempfile::tempdir().expect("temp dir");
    let parse = |extra: &[&str]| {
        let mut argv = vec![
            "lab",
            "--out",
            out.path().to_str().unwrap(),
            "--live",
            "off",
        ];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).map(|w| w.lab)
    };
    // A ScaledObject with a non-external trigger cannot run in the lab.
    let file = out.path().join("cpu.yaml");
    std::fs::write(
        &file,
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: x\nspec:\n  scaleTargetRef:\n    name: c\n  triggers:\n    - type: cpu\n      metricType: Utilization\n      metadata:\n        value: \"50\"\n",
    )
    .unwrap();
    let err = run_with(
        parse(&["--scaledobject", file.to_str().unwrap()]).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("external"), "{err}");
    // An invalid ScaledObject names the field.
    std::fs::write(
        &file,
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: x\nspec:\n  scaleTargetRef:\n    name: c\n  minReplicaCount: 9\n  maxReplicaCount: 2\n  triggers:\n    - type: external\n      metadata:\n        scalerAddress: a:1\n",
    )
    .unwrap();
    let err = run_with(
        parse(&["--scaledobject", file.to_str().unwrap()]).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("spec.minReplicaCount"), "{err}");
    // Unknown profile, bad time scale, missing binaries.
    let err = run_with(
        parse(&["--test", "no-such-profile"]).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("no-such-profile"), "{err}");
    let err = run_with(
        parse(&["--time-scale", "0"]).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("time-scale"), "{err}");
    let err = run_with(
        parse(&["--scaler-bin", "/nonexistent/scaler"]).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/scaler"), "{err}");
    // --no-spawn needs both addresses.
    assert!(parse(&["--no-spawn"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_every_child_and_still_reports() {
    let _machine = heavy().await;
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    let out = tempfile::tempdir().expect("temp dir");
    let args = Wrapper::try_parse_from([
        "lab",
        "--time-scale",
        "0.25",
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--live",
        "off",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;
    // Ctrl-C in the middle of the peak, as `run` does on SIGINT/SIGTERM.
    let interrupt = CancellationToken::new();
    let trigger = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        trigger.cancel();
    });
    let outcome = tokio::time::timeout(Duration::from_secs(60), run_with(args, interrupt))
        .await
        .expect("the lab stopped within 60 s of starting")
        .expect("the lab ran");
    assert_eq!(outcome.exit_code, contract::exit::INTERRUPTED);
    assert!(outcome.report.interrupted);
    assert!(outcome.pids.len() >= 2, "{:?}", outcome.pids);
    for pid in &outcome.pids {
        assert!(!process_exists(*pid), "child {pid} is still there");
    }
    assert!(out.path().join("report.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spawn_loads_the_given_consumer_and_asks_the_given_scaler() {
    let _machine = heavy().await;
    let consumer = testkit::Spawned::start(
        binary("LAB_CONSUMER_BIN", "consumer"),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pod-name",
            "remote-1",
        ],
        &[],
        &["http"],
    )
    .await
    .expect("consumer started");
    let scaler = testkit::Spawned::start(
        binary("LAB_SCALER_BIN", "scaler"),
        &[
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ],
        &[],
        &["grpc", "http"],
    )
    .await
    .expect("scaler started");
    let out = tempfile::tempdir().expect("temp dir");
    // The ScaledObject as a user would point it at their port-forwarded consumer; type `external` (unary
    // IsActive), where the demo's triggers are `external-push` (StreamIsActive).
    let so = out.path().join("scaledobject.yaml");
    std::fs::write(
        &so,
        format!(
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: remote\n  namespace: lab\nspec:\n  scaleTargetRef:\n    name: consumer\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 5\n  triggers:\n    - type: external\n      name: backlog\n      metadata:\n        scalerAddress: cluster-scaler:6000\n        trigger: backlog\n        targets: {}\n        target: \"2\"\n        activationTarget: \"1\"\n",
            consumer.url("http")
        ),
    )
    .unwrap();
    let profile = out.path().join("burst.yaml");
    std::fs::write(
        &profile,
        "name: burst\ndescription: 6 s of async I/O beyond one replica's executors\nstart_rate: 40.0\nstages:\n- name: burst\n  duration: 6s\n  rate: 40.0\nrequests:\n- method: POST\n  path: /load/io\n  body:\n    delay_ms: 300\n    mode: async\n  weight: 1\n",
    )
    .unwrap();
    let args = Wrapper::try_parse_from([
        "lab",
        "--no-spawn",
        "--consumer-url",
        &consumer.url("http"),
        "--scaler-addr",
        &scaler.addr("grpc").to_string(),
        "--scaledobject",
        so.to_str().unwrap(),
        "--test",
        profile.to_str().unwrap(),
        "--time-scale",
        "1",
        "--settle",
        "3s",
        "--live",
        "off",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run_with(args, CancellationToken::new()),
    )
    .await
    .expect("finished")
    .expect("ran");
    assert_eq!(outcome.exit_code, 0, "{}", outcome.report.verdict);
    assert!(
        outcome.pids.is_empty(),
        "--no-spawn started {:?}",
        outcome.pids
    );
    assert!(
        outcome.report.requests > 100,
        "{} requests",
        outcome.report.requests
    );
    assert!(
        outcome.report.served_by.contains_key("remote-1"),
        "{:?}",
        outcome.report.served_by
    );
    // The remote scaler answered with real readings, and the simulated count followed the decisions.
    let read = outcome
        .decisions
        .iter()
        .filter(|d| d.metrics[0].value.is_some())
        .count();
    assert!(read >= 3, "{:#?}", outcome.decisions);
    let peak = outcome.decisions.iter().map(|d| d.desired).max().unwrap();
    assert!(
        peak >= 2,
        "the backlog never asked for more: {:#?}",
        outcome.decisions
    );
    for pair in outcome.decisions.windows(2) {
        assert_eq!(
            pair[1].current, pair[0].desired,
            "the simulated count applies each decision"
        );
    }
    // The same scaling report as a spawning run, said to come from simulated decisions.
    let analysis = outcome
        .report
        .scaling
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .expect("--no-spawn reports the scaling analysis too");
    assert_eq!(analysis.schema, timeline::SCHEMA);
    assert!(!outcome.timeline.decisions.is_empty());
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).expect("summary.txt");
    assert!(
        summary.contains("--no-spawn: simulated, not applied"),
        "{summary}"
    );
    // The consumer and scaler given are untouched.
    assert!(consumer.pid() > 0 && scaler.pid() > 0);
    testkit::wait_http_ok(
        &format!("{}/health", consumer.url("http")),
        Duration::from_secs(5),
    )
    .await
    .expect("the remote consumer is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_pool_behaves_like_a_deployment_behind_a_service() {
    let _machine = heavy().await;
    use lab::replicas::{ReplicaPool, ReplicaTemplate};
    let targets = load::TargetSet::default();
    let pool = ReplicaPool::new(
        ReplicaTemplate {
            binary: binary("LAB_CONSUMER_BIN", "consumer"),
            extra_args: vec!["--executors".into(), "2".into()],
            grace: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            children: procs::Registry::new(),
        },
        targets.clone(),
    );
    let wait_for = |ready: u32| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                pool.reap_dead().await;
                let s = pool.snapshot();
                if s.ready == ready && s.current == ready && s.draining == 0 {
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "pool never settled at {ready}: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    pool.scale_to(3);
    // Replicas count as current at once but join the Service only when ready.
    let starting = pool.snapshot();
    assert_eq!((starting.current, starting.ready), (3, 0));
    assert!(targets.is_empty());
    let ready = wait_for(3).await;
    assert_eq!(targets.len(), 3);
    for url in &ready.ready_urls {
        testkit::wait_http_ok(&format!("{url}/ready"), Duration::from_secs(5))
            .await
            .expect("a target is ready");
    }

    // A replica that dies is dropped from the Service and replaced (the ReplicaSet keeps spec.replicas).
    let victim = pool.pids()[0];
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.restarts() == 0 {
        pool.reap_dead().await;
        assert!(
            Instant::now() < deadline,
            "the dead replica was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healed = wait_for(3).await;
    assert_eq!(pool.pids().len(), 4);
    assert!(
        healed
            .problems
            .iter()
            .any(|p| p.contains("exited unexpectedly")),
        "{:?}",
        healed.problems
    );

    // Scale-in: leaves the Service first, then drains on SIGTERM.
    pool.scale_to(1);
    assert_eq!(
        targets.len(),
        1,
        "removed replicas leave the target set at once"
    );
    wait_for(1).await;
    pool.shutdown().await;
    assert!(targets.is_empty());
    let (drained, killed) = pool.stop_counts();
    assert_eq!((drained, killed), (3, 0));
    for pid in pool.pids() {
        assert!(!process_exists(pid), "child {pid} is still there");
    }
}
