//! The report's SVG chart read back as a reader sees it: every panel's value and time ticks lie inside the axis band,
//! run in order, are evenly spaced, show nice numbers, and the replica axis counts in whole numbers.

use std::time::{Duration, SystemTime};

use generator::report::{Report, RunData};
use generator::stats::{IntervalStats, LatencySummary, Shard};
use generator::{ArrivalMode, Profile, ReplicaSnapshot, RequestSpec, Split};

/// A 247-second run (the length of the lab demo whose chart showed the fault): rate up and down, latency climbing
/// while one to three replicas serve.
fn report(seconds: usize, peak_replicas: u32) -> Report {
    let intervals: Vec<IntervalStats> = (0..seconds)
        .map(|i| {
            let t = i as f64;
            let rate = if t < seconds as f64 / 2.0 {
                5.0 + t
            } else {
                5.0
            };
            let replicas = 1 + (i as u32 * peak_replicas / seconds as u32).min(peak_replicas - 1);
            IntervalStats {
                index: i as u64,
                start_s: t,
                end_s: t + 1.0,
                target_rate: rate,
                completed: rate as u64,
                achieved_rate: rate * 0.97,
                latency: LatencySummary {
                    p50_ms: 3.0 + t / 10.0,
                    p95_ms: 7.0 + t,
                    p99_ms: 9.0 + 2.0 * t,
                    ..LatencySummary::default()
                },
                served_by: (0..replicas).map(|r| (format!("pod-{r}"), 1)).collect(),
                replicas: Some(ReplicaSnapshot {
                    desired: Some(replicas),
                    current: Some(replicas),
                    ready: Some(replicas),
                    ..ReplicaSnapshot::default()
                }),
                ..IntervalStats::default()
            }
        })
        .collect();
    Report::assemble(RunData {
        profile: Profile::constant(
            10.0,
            Duration::from_secs(seconds as u64),
            RequestSpec::new("GET", "/", None),
        ),
        mode: ArrivalMode::Open,
        split: Split::default(),
        started_at: SystemTime::UNIX_EPOCH,
        load_elapsed: Duration::from_secs(seconds as u64),
        elapsed: Duration::from_secs(seconds as u64),
        interrupted: false,
        unfinished: 0,
        endpoint_names: vec!["GET /".into()],
        totals: Shard::new(1),
        intervals,
        timeline: Vec::new(),
        monitor_name: None,
        monitor_errors: 0,
        monitor_last_error: None,
        scaling_record: None,
        slo: None,
        expected_requests: 10.0 * seconds as f64,
        load_end_s: seconds as f64,
        schedule_lag: LatencySummary::default(),
        generator_cpu_seconds: None,
        targets: vec!["http://127.0.0.1:1".into()],
    })
}

#[test]
fn report_chart_ticks_lie_on_their_axes_evenly_and_in_nice_numbers() {
    for (seconds, peak) in [(247, 3), (9, 2), (61, 7), (1800, 12)] {
        let svg = report(seconds, peak).render_svg();
        let panels = testkit::svg::panels(&svg).unwrap_or_else(|e| panic!("{seconds}s: {e}"));
        assert_eq!(panels.len(), 3, "rate, latency and replica panels");
        testkit::svg::check_chart(&svg, |title| title.starts_with("replicas"))
            .unwrap_or_else(|e| panic!("{seconds}s run, {peak} replicas: {e}\n{svg}"));
    }
}

/// The charts the docs show (regenerated from `lab --test demo`) pass the same reading.
#[test]
fn the_documented_demo_charts_read_correctly() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for file in ["lab-demo.svg", "lab-demo-triggers.svg"] {
        let svg = std::fs::read_to_string(docs.join(file)).expect(file);
        testkit::svg::check_chart(&svg, |title| title.starts_with("replicas"))
            .unwrap_or_else(|e| panic!("docs/{file}: {e}"));
    }
}
