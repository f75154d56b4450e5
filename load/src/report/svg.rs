//! `report.svg`: arrival rate, latency and (when known) replicas over the run, drawn with the lab's one chart writer
//! ([`crate::chart`]).

use super::types::Report;
use crate::chart::{Axis, Chart, Panel, Series};
use crate::model::ReplicaSnapshot;
use crate::stats::{IntervalStats, LatencySummary, fmt_ms};

const PANEL_HEIGHT: f64 = 170.0;

impl Report {
    /// The report's charts as one [`Chart`].
    pub fn chart(&self) -> Chart {
        let mid = |i: &IntervalStats| (i.start_s + i.end_s) / 2.0;
        let per_interval = |f: &dyn Fn(&IntervalStats) -> f64| -> Vec<(f64, f64)> {
            self.intervals.iter().map(|i| (mid(i), f(i))).collect()
        };
        let rate = Panel {
            title: "arrival rate (req/s)".into(),
            height: PANEL_HEIGHT,
            axis: Axis {
                unit: "/s".into(),
                ..Axis::default()
            },
            series: vec![
                Series::line("target", "#888", per_interval(&|i| i.target_rate)).dashed(),
                Series::line("achieved", "#1f77b4", per_interval(&|i| i.achieved_rate)),
                Series::line(
                    "dropped",
                    "#d62728",
                    per_interval(&|i| i.dropped as f64 / (i.end_s - i.start_s).max(1e-9)),
                ),
            ],
            markers: Vec::new(),
        };
        // Latency in ms, or in seconds once it reaches seconds, so the labels stay short.
        let slowest = self
            .intervals
            .iter()
            .filter(|i| i.completed > 0)
            .map(|i| i.latency.p99_ms)
            .fold(0.0f64, f64::max);
        let (scale, unit) = if slowest >= 2000.0 {
            (1000.0, "s")
        } else {
            (1.0, "ms")
        };
        let lat = |f: fn(&LatencySummary) -> f64| -> Vec<(f64, f64)> {
            self.intervals
                .iter()
                .filter(|i| i.completed > 0)
                .map(|i| (mid(i), f(&i.latency) / scale))
                .collect()
        };
        let latency = Panel {
            title: format!("latency from scheduled start ({unit})"),
            height: PANEL_HEIGHT,
            axis: Axis {
                unit: unit.into(),
                ..Axis::default()
            },
            series: vec![
                Series::line("p50", "#2ca02c", lat(|l| l.p50_ms)),
                Series::line("p95", "#ff7f0e", lat(|l| l.p95_ms)),
                Series::line("p99", "#d62728", lat(|l| l.p99_ms)),
            ],
            markers: Vec::new(),
        };
        let mut panels = vec![rate, latency];
        let has_replicas = self
            .intervals
            .iter()
            .any(|i| i.replicas.is_some() || i.served_by.len() > 1);
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
            panels.push(Panel {
                title: "replicas".into(),
                height: PANEL_HEIGHT,
                axis: Axis {
                    integer: true,
                    min_max: 1.0,
                    ..Axis::default()
                },
                series: vec![
                    Series::line("desired", "#9467bd", rep(|r| r.desired))
                        .dashed()
                        .stepped(),
                    Series::line("current", "#8c564b", rep(|r| r.current)).stepped(),
                    Series::line("ready", "#17becf", rep(|r| r.ready)).stepped(),
                    Series::line("answering (x-served-by)", "#e377c2", answering),
                ],
                markers: Vec::new(),
            });
        }
        let x_max = self.intervals.last().map_or(1.0, |i| i.end_s).max(1.0);
        Chart {
            title: format!(
                "{} — {} requests, {:.1} req/s achieved, p95 {}{}",
                self.profile,
                self.requests,
                self.achieved_rate,
                fmt_ms(self.latency.p95_ms),
                if self.interrupted {
                    " (interrupted)"
                } else {
                    ""
                }
            ),
            width: 960.0,
            x_max,
            x_caption: format!("seconds since load start (0 – {x_max:.0})"),
            panels,
        }
    }

    /// An SVG chart of rate, latency and replicas over time.
    pub fn render_svg(&self) -> String {
        self.chart().render()
    }
}
