//! The scaling report's trigger-window phase, end to end: a ScaledObject whose only trigger is a request rate over a
//! long window (longer than the whole quiet start of the run), driven by a short profile that steps from a trickle
//! to just beyond one replica. The window keeps the rate under its target long after the SLO broke, so the signal
//! phase, governed by that window, dominates the scale event.

use std::time::{Duration, Instant};

use clap::Parser;
use lab::run_with;
use timeline::{EventKind, PhaseName};
use tokio_util::sync::CancellationToken;

use crate::{Wrapper, binary, heavy};

/// One trigger: requests per second per replica over 40 s (20 s at time scale 0.5); everything else quick.
const LONG_WINDOW: &str = r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: long-window
  namespace: lab
spec:
  scaleTargetRef:
    name: consumer
  pollingInterval: 1
  cooldownPeriod: 10
  minReplicaCount: 1
  maxReplicaCount: 3
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies:
            - type: Pods
              value: 2
              periodSeconds: 2
        scaleDown:
          stabilizationWindowSeconds: 4
          policies:
            - type: Percent
              value: 100
              periodSeconds: 2
  triggers:
    - type: external-push
      name: request-rate
      metricType: AverageValue
      metadata:
        scalerAddress: scaler:6000
        trigger: request_rate
        targets: consumer:8080
        window: 40s
        target: "10"
        activationTarget: "1"
"#;

/// 10 s of a trickle, then 24 req/s of sync 200 ms I/O (one 4-executor replica serves ~20) for 20 s (at x0.5).
const STEP: &str = "name: step\ndescription: a trickle, then just beyond one replica\nstart_rate: 4.0\nstages:\n- name: quiet\n  duration: 20s\n  rate: 4.0\n- name: step\n  duration: 1s\n  rate: 24.0\n  ramp: true\n- name: over\n  duration: 39s\n  rate: 24.0\n- name: down\n  duration: 1s\n  rate: 2.0\n  ramp: true\nrequests:\n- method: POST\n  path: /load/io\n  body:\n    delay_ms: 200\n    mode: sync\n  weight: 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_trigger_window_dominates_the_scale_up() {
    let _machine = heavy().await;
    let out = tempfile::tempdir().expect("temp dir");
    let so = out.path().join("long-window.yaml");
    std::fs::write(&so, LONG_WINDOW).unwrap();
    let profile = out.path().join("step.yaml");
    std::fs::write(&profile, STEP).unwrap();
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    let args = Wrapper::try_parse_from([
        "lab",
        "--test",
        profile.to_str().unwrap(),
        "--scaledobject",
        so.to_str().unwrap(),
        "--time-scale",
        "0.5",
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--settle",
        "4s",
        "--slo",
        "p95<500ms",
        "--live",
        "off",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run_with(args, CancellationToken::new()),
    )
    .await
    .expect("the lab finished within 60 s")
    .expect("the lab ran");
    let analysis = outcome
        .report
        .scaling
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .expect("the report carries the analysis");
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).expect("summary.txt");
    let event = analysis
        .events
        .iter()
        .find(|e| e.kind == EventKind::ScaleUp && e.to_replicas > e.from_replicas)
        .unwrap_or_else(|| panic!("no scale-up event:\n{summary}"));
    assert_eq!(event.trigger.as_deref(), Some("request-rate"), "{summary}");
    assert_eq!(event.dominant, Some(PhaseName::Signal), "{summary}");
    let signal = event.phase(PhaseName::Signal);
    let governor = signal.governed_by.first().expect("the signal's governor");
    assert_eq!(governor.name, "trigger window (request-rate)", "{summary}");
    assert_eq!(governor.value, Some(20.0), "40 s at x0.5");
    // The window's share is the larger part of the event, and the advice names it.
    let took = signal.duration_s.unwrap();
    assert!(took > event.total_s.unwrap() / 2.0, "{summary}");
    assert!(
        analysis
            .advice
            .iter()
            .any(|a| a.contains("request-rate") && a.contains("window")),
        "{:?}",
        analysis.advice
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
