//! From a finished run's data to the report: totals, the generator's self-check and, with a replica source, the
//! scaling analysis (time to scale up and down, latency while scaling, replica cost).

use std::collections::BTreeMap;

use super::types::{PhaseStats, REPORT_SCHEMA, Report, RunSelfCheck, ScalingReport};
use crate::engine::RunData;
use crate::model::{ArrivalMode, Outcome, ReplicaSnapshot};
use crate::stats::{EndpointSummary, ErrorSummary, IntervalStats, LatencySummary, fmt_ms};

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

pub(crate) fn replicas_of(s: &ReplicaSnapshot) -> Option<u32> {
    s.current.or(s.ready).or(s.desired)
}

impl PhaseStats {
    fn from_intervals(list: &[&IntervalStats]) -> PhaseStats {
        let requests: u64 = list.iter().map(|i| i.completed).sum();
        let errors: u64 = list.iter().map(|i| i.errors).sum();
        let mut p95: Vec<f64> = list
            .iter()
            .filter(|i| i.completed > 0)
            .map(|i| i.latency.p95_ms)
            .collect();
        p95.sort_by(f64::total_cmp);
        PhaseStats {
            intervals: list.len() as u64,
            requests,
            errors,
            error_rate: ratio(errors, requests),
            dropped: list.iter().map(|i| i.dropped).sum(),
            p95_ms_median: p95.get(p95.len() / 2).copied().unwrap_or(0.0),
            p95_ms_max: p95.last().copied().unwrap_or(0.0),
        }
    }
}

impl Report {
    /// Build the report from a finished run.
    pub fn assemble(d: RunData) -> Report {
        let load_s = d.load_elapsed.as_secs_f64();
        let overall = d.totals.overall();
        let requests = overall.completed();
        let mut endpoints = BTreeMap::new();
        for (i, name) in d.endpoint_names.iter().enumerate() {
            endpoints.insert(
                name.clone(),
                EndpointSummary::from_counters(&d.totals.endpoints[i], load_s),
            );
        }
        let saturated_intervals = d
            .intervals
            .iter()
            .filter(|i| i.self_check.saturated)
            .count() as u64;
        let saturated = saturated_intervals >= 2
            && saturated_intervals as f64 >= 0.1 * d.intervals.len() as f64;
        let cpu_per_1000 = d
            .generator_cpu_seconds
            .filter(|_| requests > 0)
            .map(|c| c * 1000.0 / requests as f64);
        let message = if saturated {
            format!(
                "the generator itself was the bottleneck in {saturated_intervals} of {} intervals (schedule lag p99 {}): \
                 give it more CPU or split the load over more pods (--pods)",
                d.intervals.len(),
                fmt_ms(d.schedule_lag.p99_ms)
            )
        } else {
            format!(
                "the generator kept its schedule (lag p99 {})",
                fmt_ms(d.schedule_lag.p99_ms)
            )
        };
        let scaling = d
            .monitor_name
            .as_ref()
            .map(|name| analyse_scaling(name, &d, requests));
        let served_by = d
            .totals
            .served_by
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let target_rate = if load_s > 0.0 && matches!(d.mode, ArrivalMode::Open) {
            d.expected_requests / d.profile.duration().as_secs_f64().max(1e-9)
        } else {
            0.0
        };
        Report {
            schema: REPORT_SCHEMA.into(),
            profile: d.profile.name.clone(),
            mode: match d.mode {
                ArrivalMode::Open => "open".into(),
                ArrivalMode::ClosedLoop { .. } => "closed-loop".into(),
            },
            split_index: d.split.index,
            split_count: d.split.count,
            targets: d.targets.clone(),
            started_at: humantime::format_rfc3339_millis(d.started_at).to_string(),
            duration_s: load_s,
            elapsed_s: d.elapsed.as_secs_f64(),
            interrupted: d.interrupted,
            requests,
            expected_requests: d.expected_requests,
            ok: overall.count(Outcome::Ok),
            achieved_rate: if load_s > 0.0 {
                requests as f64 / load_s
            } else {
                0.0
            },
            target_rate,
            errors: ErrorSummary::from_counters(&overall),
            error_rate: ratio(overall.errors(), requests),
            dropped: overall.dropped,
            dropped_rate: ratio(overall.dropped, requests + overall.dropped),
            unfinished: d.unfinished,
            latency: LatencySummary::from_histogram(&overall.latency),
            endpoints,
            served_by,
            self_check: RunSelfCheck {
                schedule_lag: d.schedule_lag.clone(),
                generator_cpu_seconds: d.generator_cpu_seconds,
                generator_cpu_seconds_per_1000_requests: cpu_per_1000,
                saturated_intervals,
                saturated,
                message,
            },
            intervals: d.intervals,
            scaling,
            target_cpu: None,
            chaos: None,
            thresholds: Vec::new(),
            verdict: String::new(),
            exit_code: 0,
        }
    }
}

fn analyse_scaling(name: &str, d: &RunData, requests: u64) -> ScalingReport {
    let tl = &d.timeline;
    // The first observation that knows a replica count (a source may answer before it has read anything).
    let first = tl
        .iter()
        .map(|p| &p.snapshot)
        .find(|s| s.desired.is_some() || replicas_of(s).is_some());
    let initial = first.and_then(replicas_of);
    let initial_desired = first.and_then(|s| s.desired).or(initial);
    let initial_ready = first.and_then(|s| s.ready).or(initial);
    let time_to_scale_s = initial_desired.and_then(|base| {
        tl.iter()
            .find(|p| {
                p.snapshot
                    .desired
                    .or(replicas_of(&p.snapshot))
                    .is_some_and(|v| v > base)
            })
            .map(|p| p.t_s)
    });
    let time_to_first_new_ready_s = initial_ready.and_then(|base| {
        tl.iter()
            .find(|p| p.snapshot.ready.is_some_and(|v| v > base))
            .map(|p| p.t_s)
    });
    let mut peak: Option<(u32, f64)> = None;
    for p in tl {
        if let Some(r) = replicas_of(&p.snapshot)
            && peak.is_none_or(|(v, _)| r > v)
        {
            peak = Some((r, p.t_s));
        }
    }
    let peak_desired = tl.iter().filter_map(|p| p.snapshot.desired).max();
    let time_to_scale_down_s = match (initial, peak) {
        (Some(base), Some((pk, _))) if pk > base => tl
            .iter()
            .filter(|p| p.t_s >= d.load_end_s)
            .find(|p| replicas_of(&p.snapshot).is_some_and(|v| v <= base))
            .map(|p| p.t_s - d.load_end_s),
        _ => None,
    };
    let built = super::scaling_timeline::build(d);
    let analysis = timeline::analyse(
        &built.timeline,
        d.slo.as_ref(),
        &timeline::Options::default(),
    );
    let observed: Vec<&IntervalStats> = d
        .intervals
        .iter()
        .filter(|i| tl.iter().any(|p| p.t_s < i.end_s))
        .collect();
    let (scaling, steady) = split_under_provisioned(&observed, &analysis);
    // Ready replicas x seconds, integrating the step function of observations.
    let mut replica_seconds = 0.0;
    for w in tl.windows(2) {
        let r = w[0]
            .snapshot
            .ready
            .or(replicas_of(&w[0].snapshot))
            .unwrap_or(0);
        replica_seconds += f64::from(r) * (w[1].t_s - w[0].t_s);
    }
    if let Some(last) = tl.last() {
        let r = last
            .snapshot
            .ready
            .or(replicas_of(&last.snapshot))
            .unwrap_or(0);
        replica_seconds += f64::from(r) * (d.elapsed.as_secs_f64() - last.t_s).max(0.0);
    }
    ScalingReport {
        source: name.to_string(),
        observations: tl.len() as u64,
        observation_errors: d.monitor_errors,
        last_error: d.monitor_last_error.clone(),
        initial_replicas: initial,
        peak_replicas: peak.map(|p| p.0),
        peak_at_s: peak.map(|p| p.1),
        peak_desired_replicas: peak_desired,
        time_to_scale_s,
        time_to_first_new_ready_s,
        load_end_s: d.load_end_s,
        time_to_scale_down_s,
        during_scale_up: PhaseStats::from_intervals(&scaling),
        steady: PhaseStats::from_intervals(&steady),
        decisions_from: built.decisions_from,
        inputs_missing: built.missing,
        replica_seconds,
        replica_seconds_per_1000_requests: (requests > 0 && !tl.is_empty())
            .then(|| replica_seconds * 1000.0 / requests as f64),
        timeline: tl.clone(),
        analysis: Some(analysis),
    }
}

/// The intervals inside an event's under-provisioned window (demand to recovery; episodes start at interval starts),
/// and the rest.
fn split_under_provisioned<'a>(
    intervals: &[&'a IntervalStats],
    analysis: &timeline::ScalingAnalysis,
) -> (Vec<&'a IntervalStats>, Vec<&'a IntervalStats>) {
    let windows: Vec<(f64, f64)> = analysis
        .events
        .iter()
        .filter(|e| e.under_provisioned_s > 0.0)
        .filter_map(|e| {
            let demand = e
                .phases
                .iter()
                .find(|p| p.name == timeline::PhaseName::Demand)?
                .at_s?;
            Some((demand, demand + e.under_provisioned_s))
        })
        .collect();
    intervals.iter().partition(|i| {
        windows
            .iter()
            .any(|(from, to)| i.start_s >= from - 1e-9 && i.start_s < to - 1e-9)
    })
}

impl ScalingReport {
    /// Put an analysis made elsewhere (the lab's, with its exact decisions) in place, and recount
    /// `during_scale_up`/`steady` from its under-provisioned windows so the two agree.
    pub fn apply_analysis(
        &mut self,
        analysis: timeline::ScalingAnalysis,
        intervals: &[IntervalStats],
    ) {
        let observed: Vec<&IntervalStats> = intervals
            .iter()
            .filter(|i| self.timeline.iter().any(|p| p.t_s < i.end_s))
            .collect();
        let (scaling, steady) = split_under_provisioned(&observed, &analysis);
        self.during_scale_up = PhaseStats::from_intervals(&scaling);
        self.steady = PhaseStats::from_intervals(&steady);
        self.analysis = Some(analysis);
    }
}
