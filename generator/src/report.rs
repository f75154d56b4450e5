//! The run report: assembled from the engine's totals, interval series and replica timeline; the scaling analysis;
//! and its renderings (JSON file, terminal summary, terminal timeline chart, SVG chart).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::engine::{ArrivalMode, Split};
use crate::monitor::ReplicaSnapshot;
use crate::profile::Profile;
use crate::stats::{EndpointSummary, ErrorSummary, IntervalStats, LatencySummary, Shard, fmt_ms};

/// One line of an SVG panel: name, colour, dashed, points (seconds, value).
type Series<'a> = (&'a str, &'a str, bool, Vec<(f64, f64)>);

/// Version tag of the JSON report; bumped on incompatible changes.
pub const REPORT_SCHEMA: &str = "autoscaling-lab/generator-report/v1";

/// One replica observation at `t_s` seconds after load start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    #[serde(flatten)]
    pub snapshot: ReplicaSnapshot,
}

/// What the engine hands to [`Report::assemble`].
#[derive(Debug)]
pub struct RunData {
    pub profile: Profile,
    pub mode: ArrivalMode,
    pub split: Split,
    pub started_at: SystemTime,
    pub load_elapsed: Duration,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub unfinished: u64,
    pub endpoint_names: Vec<String>,
    pub totals: Shard,
    pub intervals: Vec<IntervalStats>,
    pub timeline: Vec<TimelinePoint>,
    pub monitor_name: Option<String>,
    pub monitor_errors: u64,
    pub monitor_last_error: Option<String>,
    pub expected_requests: f64,
    pub load_end_s: f64,
    pub schedule_lag: LatencySummary,
    pub generator_cpu_seconds: Option<f64>,
    pub targets: Vec<String>,
}

/// The generator's verdict on itself over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSelfCheck {
    /// How late requests started compared with their schedule.
    pub schedule_lag: LatencySummary,
    pub generator_cpu_seconds: Option<f64>,
    pub generator_cpu_seconds_per_1000_requests: Option<f64>,
    pub saturated_intervals: u64,
    /// The generator, not the target, limited the run (>= 2 intervals and >= 10 % of them saturated).
    pub saturated: bool,
    pub message: String,
}

/// Requests, errors and latency in one phase of the run (scaling up, or steady).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub intervals: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub dropped: u64,
    /// Median and maximum of the intervals' p95 latency.
    pub p95_ms_median: f64,
    pub p95_ms_max: f64,
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

/// What the autoscaler did about the load (with `--monitor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalingReport {
    pub source: String,
    pub observations: u64,
    pub observation_errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Replicas at the first observation (the minimum the run started from).
    pub initial_replicas: Option<u32>,
    pub peak_replicas: Option<u32>,
    pub peak_at_s: Option<f64>,
    pub peak_desired_replicas: Option<u32>,
    /// Load start to the first observation with more desired replicas than at the start.
    pub time_to_scale_s: Option<f64>,
    /// Load start to the first observation with more ready replicas than at the start.
    pub time_to_first_new_ready_s: Option<f64>,
    /// Where the load ends: the last time the arrival rate was at least half its peak.
    pub load_end_s: f64,
    /// From `load_end_s` to the first observation back at the initial replica count (`null` if not seen; use
    /// `--watch-after` to keep observing).
    pub time_to_scale_down_s: Option<f64>,
    /// Intervals with fewer ready replicas than desired.
    pub during_scale_up: PhaseStats,
    /// All other intervals with an observation.
    pub steady: PhaseStats,
    /// Sum over the run of ready replicas x seconds.
    pub replica_seconds: f64,
    pub replica_seconds_per_1000_requests: Option<f64>,
    pub timeline: Vec<TimelinePoint>,
}

/// CPU the target used during the run: cost per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCpu {
    /// The PromQL that measured it (`{range}` replaced by the run's length).
    pub query: String,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000_requests: Option<f64>,
}

/// One threshold and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub expression: String,
    pub actual: Option<f64>,
    pub unit: String,
    pub passed: bool,
    pub message: String,
}

/// The run report (the JSON file's schema; see docs/generator.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub profile: String,
    /// `open` or `closed-loop`.
    pub mode: String,
    pub split_index: u32,
    pub split_count: u32,
    pub targets: Vec<String>,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Load phase length in seconds.
    pub duration_s: f64,
    /// Whole run including `--watch-after`, in seconds.
    pub elapsed_s: f64,
    pub interrupted: bool,
    /// Requests finished (any outcome).
    pub requests: u64,
    /// Requests the schedule asked this generator for.
    pub expected_requests: f64,
    pub ok: u64,
    /// Finished requests per second over the load phase.
    pub achieved_rate: f64,
    /// Mean arrival rate asked for (req/s).
    pub target_rate: f64,
    pub errors: ErrorSummary,
    /// errors.total / requests.
    pub error_rate: f64,
    /// Requests that could not start on time (outstanding cap reached).
    pub dropped: u64,
    /// dropped / (requests + dropped).
    pub dropped_rate: f64,
    /// Still outstanding when the run ended (after an interruption's drain timeout).
    pub unfinished: u64,
    /// Latency from the scheduled start, overall.
    pub latency: LatencySummary,
    pub endpoints: BTreeMap<String, EndpointSummary>,
    /// Which replica answered how many requests (`x-served-by`).
    pub served_by: BTreeMap<String, u64>,
    pub self_check: RunSelfCheck,
    pub intervals: Vec<IntervalStats>,
    pub scaling: Option<ScalingReport>,
    /// The target's CPU cost over the run, from Prometheus (`--prometheus-url`), when measured.
    #[serde(default)]
    pub target_cpu: Option<TargetCpu>,
    pub thresholds: Vec<ThresholdResult>,
    /// One line: what happened and why the exit code.
    pub verdict: String,
    pub exit_code: i32,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn replicas_of(s: &ReplicaSnapshot) -> Option<u32> {
    s.current.or(s.ready).or(s.desired)
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
            ok: overall.count(crate::stats::Outcome::Ok),
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
            thresholds: Vec::new(),
            verdict: String::new(),
            exit_code: 0,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// Write the JSON report to `path` and the SVG chart next to it (same name, `.svg`); returns the SVG path.
    pub fn write_files(&self, path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.to_json())?;
        let svg_path = path.with_extension("svg");
        std::fs::write(&svg_path, self.render_svg())?;
        Ok(svg_path)
    }

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
                "  during scale-up: {} intervals, p95 median {} max {}, errors {:.2}% | steady: {} intervals, p95 median \
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

    /// An SVG chart of rate, latency and replicas over time.
    pub fn render_svg(&self) -> String {
        let w = 960.0;
        let panel_h = 170.0;
        let left = 70.0;
        let right = 20.0;
        let top = 62.0;
        let gap = 52.0;
        let has_replicas = self
            .intervals
            .iter()
            .any(|i| i.replicas.is_some() || i.served_by.len() > 1);
        let panels = if has_replicas { 3 } else { 2 };
        let h = top + panels as f64 * (panel_h + gap);
        let t_max = self.intervals.last().map_or(1.0, |i| i.end_s).max(1.0);
        let x = |t: f64| left + (w - left - right) * t / t_max;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="26" font-size="15" font-weight="bold">{} — {} requests, {:.1} req/s achieved, p95 {}{}</text>"#,
            xml_escape(&self.profile),
            self.requests,
            self.achieved_rate,
            fmt_ms(self.latency.p95_ms),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let panel = |s: &mut String,
                     idx: usize,
                     title: &str,
                     unit: &str,
                     lines: Vec<Series<'_>>| {
            let y0 = top + idx as f64 * (panel_h + gap);
            let y_max = lines
                .iter()
                .flat_map(|l| l.3.iter().map(|p| p.1))
                .fold(0.0f64, f64::max)
                .max(1e-9)
                * 1.1;
            let y = |v: f64| y0 + panel_h - panel_h * v / y_max;
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{y0}" width="{}" height="{panel_h}" fill="none" stroke="#999"/>"##,
                w - left - right
            );
            let _ = writeln!(
                s,
                r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
                y0 - 6.0,
                xml_escape(title)
            );
            for k in 0..=4 {
                let v = y_max * k as f64 / 4.0;
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
                    left - 6.0,
                    y(v) + 4.0,
                    format_axis(v, unit)
                );
            }
            // Time ticks under the panel.
            for k in 0..=6 {
                let t = t_max * k as f64 / 6.0;
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}s</text>"##,
                    x(t),
                    if t_max < 30.0 {
                        format!("{t:.1}")
                    } else {
                        format!("{t:.0}")
                    },
                    y0 + panel_h + 15.0
                );
            }
            let mut lx = left + 330.0;
            for (name, color, dashed, pts) in &lines {
                if pts.is_empty() {
                    continue;
                }
                let path: Vec<String> = pts
                    .iter()
                    .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2"{} points="{}"/>"#,
                    if *dashed {
                        r#" stroke-dasharray="6,4""#
                    } else {
                        ""
                    },
                    path.join(" ")
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{lx}" y="{}" fill="{color}">{}</text>"#,
                    y0 - 6.0,
                    xml_escape(name)
                );
                lx += 90.0;
            }
        };
        let mid = |i: &IntervalStats| (i.start_s + i.end_s) / 2.0;
        let target: Vec<(f64, f64)> = self
            .intervals
            .iter()
            .map(|i| (mid(i), i.target_rate))
            .collect();
        let achieved: Vec<(f64, f64)> = self
            .intervals
            .iter()
            .map(|i| (mid(i), i.achieved_rate))
            .collect();
        let dropped: Vec<(f64, f64)> = self
            .intervals
            .iter()
            .map(|i| (mid(i), i.dropped as f64 / (i.end_s - i.start_s).max(1e-9)))
            .collect();
        panel(
            &mut s,
            0,
            "arrival rate (req/s)",
            "/s",
            vec![
                ("target", "#888", true, target),
                ("achieved", "#1f77b4", false, achieved),
                ("dropped", "#d62728", false, dropped),
            ],
        );
        let lat = |f: fn(&LatencySummary) -> f64| -> Vec<(f64, f64)> {
            self.intervals
                .iter()
                .filter(|i| i.completed > 0)
                .map(|i| (mid(i), f(&i.latency)))
                .collect()
        };
        panel(
            &mut s,
            1,
            "latency from scheduled start (ms)",
            "ms",
            vec![
                ("p50", "#2ca02c", false, lat(|l| l.p50_ms)),
                ("p95", "#ff7f0e", false, lat(|l| l.p95_ms)),
                ("p99", "#d62728", false, lat(|l| l.p99_ms)),
            ],
        );
        if has_replicas {
            let rep = |f: fn(&ReplicaSnapshot) -> Option<u32>| -> Vec<(f64, f64)> {
                self.intervals
                    .iter()
                    .filter_map(|i| {
                        i.replicas
                            .as_ref()
                            .and_then(f)
                            .map(|v| (i.end_s, f64::from(v)))
                    })
                    .collect()
            };
            let answering: Vec<(f64, f64)> = self
                .intervals
                .iter()
                .filter(|i| !i.served_by.is_empty())
                .map(|i| (mid(i), i.served_by.len() as f64))
                .collect();
            panel(
                &mut s,
                2,
                "replicas",
                "",
                vec![
                    ("desired", "#9467bd", true, rep(|r| r.desired)),
                    ("current", "#8c564b", false, rep(|r| r.current)),
                    ("ready", "#17becf", false, rep(|r| r.ready)),
                    ("answering", "#e377c2", false, answering),
                ],
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">seconds since load start (0 – {t_max:.0})</text>"##,
            w - right,
            h - 8.0
        );
        s.push_str("</svg>\n");
        s
    }
}

fn format_axis(v: f64, unit: &str) -> String {
    if unit == "ms" {
        fmt_ms(v)
    } else if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    // An interval is "during scale-up" when, at any time within it, fewer replicas were ready than desired: the
    // state in force at its start (the last observation before it) or any observation inside it.
    let pending = |s: &ReplicaSnapshot| matches!((s.desired, s.ready), (Some(d), Some(r)) if d > r);
    let observed: Vec<&IntervalStats> = d
        .intervals
        .iter()
        .filter(|i| tl.iter().any(|p| p.t_s < i.end_s))
        .collect();
    let (scaling, steady): (Vec<&IntervalStats>, Vec<&IntervalStats>) =
        observed.iter().partition(|i| {
            let at_start = tl.iter().rev().find(|p| p.t_s <= i.start_s);
            at_start.is_some_and(|p| pending(&p.snapshot))
                || tl
                    .iter()
                    .filter(|p| p.t_s > i.start_s && p.t_s < i.end_s)
                    .any(|p| pending(&p.snapshot))
        });
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
        replica_seconds,
        replica_seconds_per_1000_requests: (requests > 0 && !tl.is_empty())
            .then(|| replica_seconds * 1000.0 / requests as f64),
        timeline: tl.clone(),
    }
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
