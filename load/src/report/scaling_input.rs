//! The run's data as the `timeline` crate's input: one place that turns the generator's interval statistics and
//! replica observations into [`timeline::Sample`]s, for the generator's `--monitor` path and the lab alike (the lab
//! then adds what only it knows exactly: decisions, trigger signals, replica lives).

use crate::stats::IntervalStats;

/// One measurement interval as a timeline sample. Latency percentiles are converted to seconds; an interval in which
/// nothing finished carries no percentiles (the analysis reads that as a stall when load was offered).
pub fn sample(interval: &IntervalStats) -> timeline::Sample {
    let finished = interval.completed > 0;
    let seconds = |ms: f64| finished.then_some(ms / 1000.0);
    let l = &interval.latency;
    let replicas = interval.replicas.as_ref();
    timeline::Sample {
        start_s: interval.start_s,
        end_s: interval.end_s,
        offered_rate: interval.target_rate,
        achieved_rate: interval.achieved_rate,
        latency: timeline::Percentiles {
            p50_s: seconds(l.p50_ms),
            p90_s: seconds(l.p90_ms),
            p95_s: seconds(l.p95_ms),
            p99_s: seconds(l.p99_ms),
            p99_9_s: seconds(l.p99_9_ms),
        },
        requests: interval.completed,
        errors_by_class: interval.errors_by_class.clone(),
        over_slo: interval.over_slo,
        desired: replicas.and_then(|r| r.desired),
        current: replicas.and_then(|r| r.current),
        ready: replicas.and_then(|r| r.ready),
        served_by: interval.served_by.keys().cloned().collect(),
        backlog: Some(interval.in_flight as f64),
    }
}

/// Every interval as a sample.
pub fn samples(intervals: &[IntervalStats]) -> Vec<timeline::Sample> {
    intervals.iter().map(sample).collect()
}
