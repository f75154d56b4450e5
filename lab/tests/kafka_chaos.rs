//! `lab --scenario kafka --chaos at=..,action=stop-broker,duration=..` end to end with a real broker: mid-load the
//! lab stops the broker it started (its port refuses connections), starts it again on the same port with the same data
//! (the port answers again), the run finishes, `verify --processed` finds no acknowledged message lost, and the fault's
//! figures (the broker's stop and return, the producer's window, the lag, verify's counts) are in report.json.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::{Wrapper, binary, heavy, process_exists};

/// The bootstrap address of the broker a lab run in this process started (its directory is
/// `$TMPDIR/lab-kafka-<our pid>-<stamp>`; the whole-lab tests take `heavy()`, so there is one at a time).
fn lab_broker() -> Option<SocketAddr> {
    let prefix = format!("lab-kafka-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .find_map(|e| std::fs::read_to_string(e.path().join("bootstrap")).ok())
        .and_then(|text| text.trim().parse().ok())
}

/// What the prober saw of the broker's port: (when, whether a connection was accepted).
type Probes = Arc<Mutex<Vec<(Instant, bool)>>>;

/// Connect to the lab's broker every 50 ms until `stop` (bounded by `limit`).
fn probe_port(stop: CancellationToken, limit: Duration) -> (std::thread::JoinHandle<()>, Probes) {
    let probes: Probes = Arc::default();
    let seen = probes.clone();
    let task = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let mut addr = None;
        while !stop.is_cancelled() && Instant::now() < deadline {
            if addr.is_none() {
                addr = lab_broker();
            }
            if let Some(a) = addr {
                let ok = TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
                seen.lock().unwrap().push((Instant::now(), ok));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (task, probes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stop_loses_no_acknowledged_message() {
    testkit::require_java();
    let _machine = heavy().await;
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    assert!(
        consumer.is_file() && scaler.is_file(),
        "build the binaries first: cargo build -p consumer -p scaler"
    );
    let root = testkit::workspace_root();
    let out = tempfile::tempdir().expect("temp dir");
    let scaledobject = root.join("manifests/components/keda/scaledobject-kafka.yaml");
    let script = root.join("scripts/kafka/broker.sh");
    // Time scale 0.2: 200 msg/s for 6 s; the broker is stopped 1.6 s in and stays down 2 s after its JVM exits.
    let args = Wrapper::try_parse_from([
        "lab",
        "--scenario",
        "kafka",
        "--scaledobject",
        scaledobject.to_str().unwrap(),
        "--kafka-script",
        script.to_str().unwrap(),
        "--time-scale",
        "0.2",
        "--kafka-duration",
        "30s",
        "--kafka-work-ms",
        "5",
        "--chaos",
        "at=8s,action=stop-broker,duration=10s",
        "--chaos-threshold",
        "lost<1,replacement<150s",
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--settle",
        "30s",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;

    let registry = procs::Registry::new();
    let started = Instant::now();
    let stop_probing = CancellationToken::new();
    let (prober, probes) = probe_port(stop_probing.clone(), Duration::from_secs(150));
    let outcome = tokio::time::timeout(
        Duration::from_secs(150),
        lab::kafka::run_supervised(args, CancellationToken::new(), &registry),
    )
    .await
    .expect("the Kafka chaos run finished within 150 s")
    .expect("the Kafka chaos run ran");
    stop_probing.cancel();
    prober.join().expect("the prober");
    let live = registry.live();
    registry.kill_all();
    assert!(live.is_empty(), "children still registered: {live:?}");
    println!("Kafka chaos run took {:?}", started.elapsed());

    // --- the port: served, refused while the broker was down, served again ----------------------------
    let probes = probes.lock().unwrap().clone();
    let first_up = probes.iter().position(|(_, ok)| *ok);
    let refused = first_up.and_then(|i| probes[i..].iter().position(|(_, ok)| !ok).map(|j| i + j));
    let back = refused.and_then(|i| probes[i..].iter().position(|(_, ok)| *ok).map(|j| i + j));
    let (Some(refused), Some(back)) = (refused, back) else {
        panic!(
            "the broker's port never refused and came back: {} probes, first accepted {first_up:?}, refused {refused:?}",
            probes.len()
        );
    };
    let port_down = probes[back].0 - probes[refused].0;

    // --- the fault as reported ----------------------------------------------------------------------------
    assert_eq!(outcome.exit_code, 0, "verify and the chaos thresholds pass");
    let chaos = outcome.chaos.as_ref().expect("a chaos section");
    assert_eq!(chaos.faults.len(), 1, "{chaos:#?}");
    let fault = &chaos.faults[0];
    assert_eq!(
        (fault.action.as_str(), fault.target.as_str()),
        ("stop-broker", "broker")
    );
    assert!(fault.error.is_none(), "{:?}", fault.error);
    let hit = fault.hit.as_deref().expect("the broker was hit");
    let old_pid: u32 = hit
        .rsplit("pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {hit:?}"));
    let k = fault.kafka.as_ref().expect("the Kafka figures");
    println!(
        "stop-broker: exited after {:?}s, down {:?}s, serving after {:?}s (port refused for {port_down:?}); producer window sent {} acked {} failed {}, slowest ack {:?} ms, retries {}; lag at the fault {:?}, peak {:?}; recovered after {:?}s; run: sent {} acked {} in topic {} processed {}, lost {} (acknowledged {}), duplicates {} in topic, {} processed",
        k.broker_exited_after_s,
        k.broker_down_s,
        k.broker_serving_after_s,
        k.window_sent,
        k.window_acked,
        k.window_failed,
        k.window_ack_max_ms,
        k.producer_retries,
        k.lag_at_fault,
        k.lag_peak,
        fault.recovered_after_s,
        k.sent,
        k.acked,
        k.in_topic,
        k.processed,
        k.lost_messages,
        k.lost_acknowledged,
        k.duplicates_in_topic,
        k.duplicates_processed
    );
    assert!(!k.broker_killed, "a clean stop: the JVM exited on SIGTERM");
    assert!(k.broker_error.is_none(), "{:?}", k.broker_error);
    let exited = k.broker_exited_after_s.expect("the JVM exited");
    let serving = k.broker_serving_after_s.expect("the broker came back");
    let down = k.broker_down_s.expect("a down time");
    // Down at least the fault's time-scaled 2 s after its exit; the port refused for about that long too.
    assert!(down >= 2.0, "down {down}s");
    assert!(
        (serving - exited - down).abs() < 0.01,
        "{exited} + {down} != {serving}"
    );
    assert!(
        port_down >= Duration::from_millis(1800) && port_down.as_secs_f64() <= serving + 1.0,
        "the port refused for {port_down:?}; the broker was back {serving}s after the fault"
    );
    assert_eq!(fault.replacement_ready_after_s, Some(serving));
    assert!(fault.recovered_after_s.is_some(), "the lag drained");
    assert!(fault.slo_hurt);
    assert!(k.window_sent > 0 && k.lag_peak >= k.lag_at_fault, "{k:?}");
    assert!(fault.autoscaler.steps > 0, "the controller kept stepping");
    // The same broker directory, a new JVM: the old one is gone.
    assert!(
        !process_exists(old_pid),
        "the stopped JVM {old_pid} is still there"
    );
    let new_pid = outcome.broker_pid.expect("the lab started a broker");
    assert_ne!(new_pid, old_pid);

    // --- no acknowledged message lost ---------------------------------------------------------------------
    let verify = outcome.verify.as_ref().expect("verify ran");
    let processed = verify.processed.as_ref().expect("processed topic checked");
    assert!(
        verify.delivered.complete && processed.complete,
        "{}",
        verify.verdict
    );
    // The producer's message timeout (30 s) outlasts the outage: every message sent was acknowledged.
    let sent = k.sent;
    assert!(sent >= 1100, "200 msg/s for 6 s: {sent}");
    assert_eq!((k.acked, k.window_failed), (sent, 0), "{k:?}");
    assert_eq!(
        (
            k.in_topic,
            k.processed,
            k.lost_acknowledged,
            k.lost_messages
        ),
        (sent, sent, 0, 0),
        "{}",
        verify.verdict
    );
    assert_eq!(
        (k.not_processed, k.backlog_at_end),
        (0, Some(0)),
        "the backlog drained"
    );
    assert_eq!((verify.delivered.lost, processed.lost), (0, 0));
    assert_eq!(fault.lost, 0, "a fault's lost counts Kafka messages");
    // Idempotent producer: a send retried across the stop is written once.
    assert_eq!(k.duplicates_in_topic, 0, "{}", verify.verdict);
    // Processing is at-least-once: a repeat is possible (reported), a gap is not.
    assert_eq!(k.duplicates_processed, processed.duplicates);
    assert!(chaos.passed(), "{:#?}", chaos.thresholds);
    assert_eq!(
        chaos.thresholds[0].actual,
        Some(0.0),
        "lost<1 judged Kafka's lost"
    );

    // --- report.json carries it ---------------------------------------------------------------------------
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json")).expect("report.json"),
    )
    .expect("report.json parses");
    let reported = &report["chaos"]["faults"][0];
    assert_eq!(reported["action"], "stop-broker");
    assert_eq!(reported["kafka"]["broker_serving_after_s"], serving);
    assert_eq!(reported["kafka"]["lost_acknowledged"], 0);
    assert_eq!(report["produce"]["kafka"]["scheduled"], sent);
    assert_eq!(report["produce"]["kafka"]["acked"], sent);
    assert!(out.path().join("verify.json").is_file());

    for pid in &outcome.pids {
        assert!(!process_exists(*pid), "child {pid} outlived the run");
    }
    assert!(
        !process_exists(new_pid),
        "the restarted broker JVM {new_pid} outlived the run"
    );
}
