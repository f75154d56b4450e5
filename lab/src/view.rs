//! What the lab shows: a banner saying what runs and at which time scale, a live view refreshed each
//! second (rates, latency percentiles, each trigger's value against its target, replicas, the last scaling
//! decision in words, the phase an open scale event waits in), and the closing summary with the controller's
//! scaling events.

use std::io::{IsTerminal, Write};

use autoscaler::{Decision, MetricStatus, MetricType, ScalingConfig};
use serde::{Deserialize, Serialize};

use crate::replicas::PoolSnapshot;
use autoscaler::hpa::{num, secs as dur};
use load::profile::Profile;
use load::report::Report;
use load::stats::{IntervalStats, fmt_ms};

/// How the live view is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveMode {
    /// Redraw the screen in place.
    Tty,
    /// One line per second (and one per decision that changes the count).
    Plain,
    Off,
}

impl LiveMode {
    pub fn parse(text: &str) -> LiveMode {
        match text {
            "tty" => LiveMode::Tty,
            "plain" => LiveMode::Plain,
            "off" => LiveMode::Off,
            _ if std::io::stdout().is_terminal() => LiveMode::Tty,
            _ => LiveMode::Plain,
        }
    }
}

/// One controller step as logged to decisions.jsonl and kept for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Seconds since the lab's epoch (just before the load starts).
    pub t_s: f64,
    pub current: u32,
    pub ready: u32,
    pub desired: u32,
    pub active: bool,
    pub winner: Option<String>,
    pub raw: Option<u32>,
    /// The decision in words.
    pub reason: String,
    /// Per trigger: name, value, target, proposal, status.
    pub metrics: Vec<MetricRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub name: String,
    pub metric_type: String,
    pub value: Option<f64>,
    pub target: f64,
    pub active: bool,
    pub proposal: Option<u32>,
    pub status: String,
}

impl DecisionRecord {
    pub fn from_decision(d: &Decision, ready: u32) -> DecisionRecord {
        DecisionRecord {
            t_s: (d.at.as_secs_f64() * 1000.0).round() / 1000.0,
            current: d.current,
            ready,
            desired: d.desired,
            active: d.active,
            winner: d.winner.clone(),
            raw: d.raw,
            reason: d.to_string(),
            metrics: d
                .metrics
                .iter()
                .map(|m| MetricRecord {
                    name: m.name.clone(),
                    metric_type: m.metric_type.to_string(),
                    value: m.value,
                    target: m.target,
                    active: m.active,
                    proposal: m.proposal,
                    status: match &m.status {
                        MetricStatus::Ok => "ok".into(),
                        MetricStatus::WithinTolerance => "within tolerance".into(),
                        MetricStatus::Error { message, failures } => {
                            format!("error x{failures}: {message}")
                        }
                        MetricStatus::Fallback {
                            failures, replicas, ..
                        } => {
                            format!("fallback to {replicas} after {failures} failures")
                        }
                    },
                })
                .collect(),
        }
    }
}

/// The lab's screen.
#[derive(Debug)]
pub struct LabView {
    mode: LiveMode,
    header: Vec<String>,
    notes: Vec<String>,
    last_printed_decision: Option<(f64, u32, u32)>,
}

impl LabView {
    pub fn new(
        mode: LiveMode,
        config: &ScalingConfig,
        origin: &str,
        profile: &Profile,
        time_scale: f64,
        no_spawn: bool,
    ) -> LabView {
        let mut header = vec![format!(
            "autoscaling lab · ScaledObject {} ({origin}) · profile {} ({}) · {}",
            config.name,
            profile.name,
            dur(profile.duration()),
            if no_spawn {
                "remote (--no-spawn): decisions are simulated, not applied"
            } else {
                "local replicas on 127.0.0.1"
            }
        )];
        if (time_scale - 1.0).abs() > f64::EPSILON {
            header.push(format!(
                "time scale x{time_scale}: every ScaledObject and profile duration is multiplied by {time_scale} \
                 (pollingInterval {}, cooldownPeriod {}, scale-down window {}, scale-up window {}); \
                 replica counts, targets and tolerance are unchanged",
                dur(config.polling_interval),
                dur(config.cooldown_period),
                dur(config.scale_down.stabilization_window),
                dur(config.scale_up.stabilization_window),
            ));
        }
        header.push(format!(
            "replicas min {} max {} · scale-up {} · scale-down {}",
            config.min_replica_count,
            config.max_replica_count,
            autoscaler::hpa::describe_policies(&config.scale_up),
            autoscaler::hpa::describe_policies(&config.scale_down),
        ));
        LabView {
            mode,
            header,
            notes: Vec::new(),
            last_printed_decision: None,
        }
    }

    pub fn banner(&self) {
        if self.mode == LiveMode::Off {
            return;
        }
        for line in &self.header {
            println!("{line}");
        }
    }

    /// A line kept in the header (redrawn with every frame of the terminal view).
    pub fn add_header(&mut self, line: &str) {
        self.header.push(line.to_string());
    }

    /// Every line noted so far.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn note(&mut self, text: &str) {
        if self.mode != LiveMode::Off && self.mode != LiveMode::Tty {
            println!("{text}");
        }
        self.notes.push(text.to_string());
    }

    /// One refresh, called once per interval of the load engine.
    pub fn tick(
        &mut self,
        stats: &IntervalStats,
        decision: Option<&Decision>,
        pool: Option<&PoolSnapshot>,
        phase: Option<&str>,
    ) {
        match self.mode {
            LiveMode::Off => {}
            LiveMode::Plain => {
                println!("{}", status_line(stats, decision, pool, true));
                if let Some(phase) = phase {
                    println!("  scale {phase}");
                }
                if let Some(d) = decision {
                    let key = (d.at.as_secs_f64(), d.current, d.desired);
                    if d.desired != d.current && self.last_printed_decision != Some(key) {
                        println!("  decision @{:.1}s: {d}", d.at.as_secs_f64());
                        self.last_printed_decision = Some(key);
                    }
                }
            }
            LiveMode::Tty => {
                let mut screen = String::from("\x1b[H\x1b[2J");
                for line in &self.header {
                    screen.push_str(line);
                    screen.push('\n');
                }
                for line in self.notes.iter().rev().take(3).rev() {
                    screen.push_str(line);
                    screen.push('\n');
                }
                screen.push('\n');
                screen.push_str(&status_line(stats, decision, pool, false));
                screen.push('\n');
                if let Some(phase) = phase {
                    screen.push_str(&format!("scale {phase}\n"));
                }
                if let Some(d) = decision {
                    screen.push_str(&trigger_table(d));
                    screen.push_str(&format!(
                        "\nlast decision @{:.1}s: {d}\n",
                        d.at.as_secs_f64()
                    ));
                }
                if let Some(p) = pool
                    && let Some(problem) = p.problems.last()
                {
                    screen.push_str(&format!("\nproblem: {problem}\n"));
                }
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(screen.as_bytes());
                let _ = out.flush();
            }
        }
    }

    /// The closing summary: the generator's report, its timeline, and the controller's scaling events.
    pub fn finish(
        &self,
        report: &Report,
        decisions: &[DecisionRecord],
        stops: Option<(u32, u32)>,
        pool: Option<&PoolSnapshot>,
    ) -> String {
        let mut s = String::new();
        for line in &self.header {
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&report.render_summary());
        s.push('\n');
        s.push_str(&report.render_timeline(100));
        s.push_str("\nscaling decisions (controller log):\n");
        let changes: Vec<&DecisionRecord> = decisions
            .iter()
            .filter(|d| d.desired != d.current)
            .collect();
        if changes.is_empty() {
            s.push_str("  none: the replica count never changed\n");
        }
        for d in changes {
            s.push_str(&format!("  {:>7.1}s  {}\n", d.t_s, d.reason));
        }
        let peak = decisions.iter().map(|d| d.desired).max().unwrap_or(0);
        s.push_str(&format!(
            "\n{} controller steps, peak desired replicas {peak}",
            decisions.len()
        ));
        if let Some((drained, killed)) = stops {
            s.push_str(&format!(
                ", replicas stopped: {drained} drained after SIGTERM, {killed} killed"
            ));
        }
        s.push('\n');
        if let Some(p) = pool
            && !p.problems.is_empty()
        {
            s.push_str("problems:\n");
            for problem in &p.problems {
                s.push_str(&format!("  {problem}\n"));
            }
        }
        s
    }
}

/// One line of rates, latency and replicas; with `triggers`, each trigger's value/target too (the plain
/// view has no table).
fn status_line(
    stats: &IntervalStats,
    decision: Option<&Decision>,
    pool: Option<&PoolSnapshot>,
    triggers: bool,
) -> String {
    let mut line = format!(
        "[{:>6.1}s] {:<10} offered {:>6.1}/s served {:>6.1}/s p50 {:>7} p95 {:>7} p99 {:>7} err {:>4}",
        stats.end_s,
        stats.stage.as_deref().unwrap_or("settle"),
        stats.target_rate,
        stats.achieved_rate,
        fmt_ms(stats.latency.p50_ms),
        fmt_ms(stats.latency.p95_ms),
        fmt_ms(stats.latency.p99_ms),
        stats.errors,
    );
    let desired = decision
        .map(|d| d.desired.to_string())
        .unwrap_or_else(|| "-".into());
    match pool {
        Some(p) => line.push_str(&format!(
            " | replicas desired {desired} current {} ready {} draining {}",
            p.current, p.ready, p.draining
        )),
        None => line.push_str(&format!(" | replicas desired {desired} (simulated)")),
    }
    if let Some(d) = decision.filter(|_| triggers) {
        let triggers: Vec<String> = d
            .metrics
            .iter()
            .map(|m| {
                let value = m.value.map(num).unwrap_or_else(|| "err".into());
                format!("{} {}/{}", m.name, value, num(m.target))
            })
            .collect();
        line.push_str(&format!(" | {}", triggers.join(" ")));
    }
    line
}

fn trigger_table(d: &Decision) -> String {
    let mut s = String::from(
        "trigger               value        target            active  proposes  status\n",
    );
    for m in &d.metrics {
        let target = match m.metric_type {
            MetricType::Value => num(m.target),
            _ => format!("{} /replica", num(m.target)),
        };
        let status = match &m.status {
            MetricStatus::Ok => m.formula.clone(),
            MetricStatus::WithinTolerance => "within tolerance".into(),
            MetricStatus::Error { message, failures } => format!("error x{failures}: {message}"),
            MetricStatus::Fallback { replicas, .. } => format!("fallback {replicas}"),
        };
        s.push_str(&format!(
            "{:<21} {:>12} {:>17} {:>7} {:>9}  {}\n",
            m.name,
            m.value.map(num).unwrap_or_else(|| "-".into()),
            target,
            if m.active { "yes" } else { "no" },
            m.proposal
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            status
        ));
    }
    s
}
