//! `lab --scenario kafka` end to end through the library: a real broker from scripts/kafka/broker.sh, consumer
//! replicas in Kafka mode, the scaler's `kafka` trigger and the generator's producer at time scale 0.2. The lag scales
//! the group above one replica (never above the 4 partitions) and back to one, `verify --processed` finds nothing
//! lost, and neither a child nor the broker JVM outlives the run.

use std::time::{Duration, Instant};

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::{Wrapper, binary, heavy, process_exists};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_scales_consumers_up_to_the_partitions_and_back() {
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
        "--consumer-bin",
        consumer.to_str().unwrap(),
        "--scaler-bin",
        scaler.to_str().unwrap(),
        "--settle",
        "40s",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .expect("lab arguments parse")
    .lab;

    let registry = procs::Registry::new();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(115),
        lab::kafka::run_supervised(args, CancellationToken::new(), &registry),
    )
    .await
    .expect("the Kafka scenario finished within 115 s")
    .expect("the Kafka scenario ran");
    let live = registry.live();
    registry.kill_all();
    assert!(live.is_empty(), "children still registered: {live:?}");
    println!("Kafka scenario took {:?}", started.elapsed());

    let decisions = &outcome.decisions;
    assert!(!decisions.is_empty(), "no decision was made");
    assert!(
        decisions
            .iter()
            .all(|d| d.metrics.iter().any(|m| m.name == "kafka-lag")),
        "every decision reads the kafka trigger"
    );
    let peak = decisions.iter().map(|d| d.desired).max().unwrap_or(0);
    assert!(
        peak > 1,
        "the lag never scaled above 1 replica: {decisions:#?}"
    );
    assert!(
        peak <= lab::kafka::PARTITIONS as u32,
        "the partition cap did not hold: peak {peak}"
    );
    let last = decisions.last().expect("a decision");
    assert_eq!(
        (last.current, last.desired),
        (1, 1),
        "back to one replica after the lag drained"
    );
    assert_eq!(outcome.exit_code, 0);

    let verify = outcome.verify.expect("verify ran");
    assert!(verify.delivered.records_read > 0, "{}", verify.verdict);
    let processed = verify.processed.expect("processed topic checked");
    assert_eq!(
        (verify.delivered.lost, processed.lost),
        (0, 0),
        "{}",
        verify.verdict
    );

    for pid in &outcome.pids {
        assert!(!process_exists(*pid), "child {pid} outlived the run");
    }
    let broker = outcome.broker_pid.expect("the lab started a broker");
    assert!(
        !process_exists(broker),
        "the broker JVM {broker} outlived the run"
    );
}
