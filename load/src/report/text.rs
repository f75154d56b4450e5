//! The report for a terminal: the end-of-run summary table and the timeline as sparklines.

use std::fmt::Write as _;

use super::analysis::replicas_of;
use super::types::Report;
use crate::stats::{EndpointSummary, IntervalStats, fmt_ms};

impl Report {
    /// The end-of-run summary table for a terminal.
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== {} ({} model){}: {:.1}s, targets {}",
            self.profile,
            self.mode,
            if self.interrupted {
                ", INTERRUPTED"
            } else {
                ""
            },
            self.duration_s,
            self.targets.join(", ")
        );
        if self.split_count > 1 {
            let _ = writeln!(
                s,
                "   pod {} of {}: this report covers 1/{} of the load",
                self.split_index, self.split_count, self.split_count
            );
        }
        let _ = writeln!(
            s,
            "{:<30} {:>9} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "endpoint",
            "requests",
            "errors",
            "dropped",
            "rate/s",
            "p50",
            "p90",
            "p95",
            "p99",
            "p99.9",
            "max",
        );
        let row = |s: &mut String, name: &str, e: &EndpointSummary| {
            let _ = writeln!(
                s,
                "{:<30} {:>9} {:>8} {:>7} {:>7.1} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                truncate(name, 30),
                e.requests,
                e.errors.total,
                e.dropped,
                e.achieved_rate,
                fmt_ms(e.latency.p50_ms),
                fmt_ms(e.latency.p90_ms),
                fmt_ms(e.latency.p95_ms),
                fmt_ms(e.latency.p99_ms),
                fmt_ms(e.latency.p99_9_ms),
                fmt_ms(e.latency.max_ms),
            );
        };
        for (name, e) in &self.endpoints {
            row(&mut s, name, e);
        }
        if self.endpoints.len() > 1 || self.endpoints.is_empty() {
            let all = EndpointSummary {
                requests: self.requests,
                ok: self.ok,
                achieved_rate: self.achieved_rate,
                errors: self.errors.clone(),
                dropped: self.dropped,
                latency: self.latency.clone(),
            };
            row(&mut s, "TOTAL", &all);
        }
        let _ = writeln!(
            s,
            "achieved {:.1} req/s of {:.1} asked; {} of {:.0} expected requests finished; latency is measured from each \
             request's scheduled start",
            self.achieved_rate, self.target_rate, self.requests, self.expected_requests
        );
        if self.errors.total > 0 {
            let codes: Vec<String> = self
                .errors
                .status_codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(
                s,
                "errors {} ({:.2}%): throttled(429) {}, http_error {}, timeout {}, connect_error {}, other_error {}{}",
                self.errors.total,
                self.error_rate * 100.0,
                self.errors.throttled,
                self.errors.http_error,
                self.errors.timeout,
                self.errors.connect_error,
                self.errors.other_error,
                if codes.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", codes.join(", "))
                }
            );
        }
        if self.dropped > 0 {
            let _ = writeln!(
                s,
                "dropped {} ({:.2}%): the outstanding-request cap was reached, so they were not sent late",
                self.dropped,
                self.dropped_rate * 100.0
            );
        }
        if !self.served_by.is_empty() {
            let total: u64 = self.served_by.values().sum();
            let parts: Vec<String> = self
                .served_by
                .iter()
                .map(|(k, v)| format!("{k} {:.0}%", 100.0 * *v as f64 / total.max(1) as f64))
                .collect();
            let _ = writeln!(s, "served by: {}", parts.join(", "));
        }
        let _ = writeln!(s, "self-check: {}", self.self_check.message);
        if let Some(t) = &self.target_cpu {
            let _ = writeln!(
                s,
                "target CPU: {:.2} CPU-seconds{} (Prometheus: {})",
                t.cpu_seconds,
                t.cpu_seconds_per_1000_requests
                    .map(|c| format!(", {c:.3} per 1000 requests"))
                    .unwrap_or_default(),
                t.query
            );
        }
        if let Some(c) = self.self_check.generator_cpu_seconds_per_1000_requests {
            let _ = writeln!(s, "generator CPU: {c:.3} CPU-seconds per 1000 requests");
        }
        if let Some(sc) = &self.scaling {
            let opt = |v: Option<f64>| v.map_or("not seen".to_string(), |x| format!("{x:.1}s"));
            let _ = writeln!(
                s,
                "scaling ({}; {} observations, {} failed): replicas {} -> peak {} at {}; first scale-up decision {}, \
                 first new ready replica {}, back to {} {} after the load ended",
                sc.source,
                sc.observations,
                sc.observation_errors,
                sc.initial_replicas.map_or("?".into(), |v| v.to_string()),
                sc.peak_replicas.map_or("?".into(), |v| v.to_string()),
                opt(sc.peak_at_s),
                opt(sc.time_to_scale_s),
                opt(sc.time_to_first_new_ready_s),
                sc.initial_replicas.map_or("?".into(), |v| v.to_string()),
                opt(sc.time_to_scale_down_s),
            );
            let _ = writeln!(
                s,
                "  during scale-up (under-provisioned): {} intervals, p95 median {} max {}, errors {:.2}% | steady: {} intervals, p95 median \
                 {} max {}, errors {:.2}%",
                sc.during_scale_up.intervals,
                fmt_ms(sc.during_scale_up.p95_ms_median),
                fmt_ms(sc.during_scale_up.p95_ms_max),
                sc.during_scale_up.error_rate * 100.0,
                sc.steady.intervals,
                fmt_ms(sc.steady.p95_ms_median),
                fmt_ms(sc.steady.p95_ms_max),
                sc.steady.error_rate * 100.0,
            );
            if let Some(c) = sc.replica_seconds_per_1000_requests {
                let _ = writeln!(
                    s,
                    "  cost: {:.1} replica-seconds in total, {c:.2} replica-seconds per 1000 requests",
                    sc.replica_seconds
                );
            }
            if let Some(analysis) = &sc.analysis {
                s.push_str(&render_analysis(analysis));
            }
            if let Some(from) = &sc.decisions_from {
                let _ = writeln!(s, "  decision times from {from}");
            }
            for m in &sc.inputs_missing {
                let _ = writeln!(s, "  input missing: {m}");
            }
        }
        for t in &self.thresholds {
            let _ = writeln!(
                s,
                "threshold {} {}: {}",
                if t.passed { "ok  " } else { "FAIL" },
                t.expression,
                t.message
            );
        }
        if !self.verdict.is_empty() {
            let _ = writeln!(s, "verdict: {}", self.verdict);
        }
        s
    }

    /// The timeline as terminal sparklines: target and achieved rate, p95, replicas. At most `width` columns.
    pub fn render_timeline(&self, width: usize) -> String {
        let n = self.intervals.len();
        if n == 0 {
            return String::new();
        }
        let width = width.clamp(10, 200);
        let cols = n.min(width);
        let bucket = |col: usize| -> std::ops::Range<usize> {
            let a = col * n / cols;
            let b = ((col + 1) * n / cols).max(a + 1);
            a..b
        };
        let series = |f: &dyn Fn(&IntervalStats) -> Option<f64>| -> Vec<Option<f64>> {
            (0..cols)
                .map(|c| {
                    self.intervals[bucket(c)]
                        .iter()
                        .filter_map(f)
                        .fold(None, |acc: Option<f64>, v| {
                            Some(acc.map_or(v, |a| a.max(v)))
                        })
                })
                .collect()
        };
        let target = series(&|i| Some(i.target_rate));
        let achieved = series(&|i| Some(i.achieved_rate));
        let p95 = series(&|i| (i.completed > 0).then_some(i.latency.p95_ms));
        let replicas = series(&|i| i.replicas.as_ref().and_then(replicas_of).map(f64::from));
        let rate_max = target
            .iter()
            .chain(&achieved)
            .flatten()
            .fold(0.0f64, |a, b| a.max(*b));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "timeline: {} intervals of {:.1}s, one column = {} interval(s)",
            n,
            self.intervals.first().map_or(0.0, |i| i.end_s - i.start_s),
            n.div_ceil(cols)
        );
        let _ = writeln!(
            s,
            "target rate  {} max {rate_max:.1}/s",
            sparkline(&target, rate_max)
        );
        let _ = writeln!(s, "achieved     {} ", sparkline(&achieved, rate_max));
        let p95_max = p95.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
        let _ = writeln!(
            s,
            "p95 latency  {} max {}",
            sparkline(&p95, p95_max),
            fmt_ms(p95_max)
        );
        // Distinct replicas that answered (x-served-by): the load spreading as replicas arrive.
        let answering = series(&|i| (!i.served_by.is_empty()).then_some(i.served_by.len() as f64));
        let r_max = replicas
            .iter()
            .chain(&answering)
            .flatten()
            .fold(0.0f64, |a, b| a.max(*b));
        if replicas.iter().any(Option::is_some) {
            let _ = writeln!(
                s,
                "replicas     {} max {r_max:.0}",
                sparkline(&replicas, r_max)
            );
        }
        if answering.iter().flatten().any(|v| *v > 1.0) || replicas.iter().any(Option::is_some) {
            let _ = writeln!(
                s,
                "answering    {} (distinct x-served-by)",
                sparkline(&answering, r_max)
            );
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Sparkline of values scaled to `max` (a gap is a blank).
pub fn sparkline(values: &[Option<f64>], max: f64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(v) if max <= 0.0 || *v <= 0.0 => '▁',
            Some(v) => BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

/// The scaling report's events (one phase table each), scale-down steps, cost and advice.
pub fn render_analysis(analysis: &timeline::ScalingAnalysis) -> String {
    let mut s = String::new();
    match &analysis.slo {
        Some(slo) => {
            let _ = writeln!(s, "scale events (SLO {slo}): {}", analysis.events.len());
        }
        None => {
            let _ = writeln!(s, "scale events (no SLO given): {}", analysis.events.len());
        }
    }
    for event in &analysis.events {
        for line in timeline::render_event(event).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    for advice in &analysis.advice {
        let _ = writeln!(s, "  advice: {advice}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales() {
        assert_eq!(
            sparkline(&[Some(0.0), Some(5.0), Some(10.0), None], 10.0),
            "▁▅█ "
        );
    }
}
