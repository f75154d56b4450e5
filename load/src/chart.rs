//! The one SVG chart writer of the lab: stacked time-series panels sharing a time axis, each with a value axis,
//! series (lines or step lines, solid or dashed, with gaps), horizontal markers and a legend. The generator's
//! `report.svg` and the lab's `triggers.svg` are both [`Chart`]s, so both get the same axes.
//!
//! Ticks are "nice" numbers (1, 2, 2.5 or 5 times a power of ten) at even steps from 0, placed by the same scale as
//! the data; count axes (replicas) tick in whole numbers only. No dependency: the output is a few hundred elements.

use std::fmt::Write as _;

const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 62.0;
/// Space under a panel for its time labels before the legend rows.
const UNDER: f64 = 34.0;
const LEGEND_ROW: f64 = 15.0;
/// Space above a panel for its title.
const ABOVE: f64 = 26.0;
const LEGEND_PER_ROW: usize = 4;
const LEGEND_WIDTH: f64 = 210.0;

/// A chart: a title, panels stacked top to bottom, one time axis (seconds from 0 to `x_max`).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub width: f64,
    /// The time axis ends here (seconds); at least 1.
    pub x_max: f64,
    /// Caption under the last panel, right-aligned (what the time axis counts).
    pub x_caption: String,
    pub panels: Vec<Panel>,
}

/// One panel: a plot band with a value axis from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub height: f64,
    pub axis: Axis,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
}

/// A value axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Axis {
    /// Appended to each tick label (`ms`, `/s`); empty for plain numbers.
    pub unit: String,
    /// Counts of whole things (replicas): whole-number ticks only.
    pub integer: bool,
    /// The axis reaches at least this far even when the data stays lower (e.g. 1 for a usage ratio).
    pub min_max: f64,
    /// Values above this are drawn at the cap, so one spike does not flatten the rest.
    pub cap: Option<f64>,
}

/// One line of a panel. `None` values leave a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: String,
    pub dashed: bool,
    /// Draw as a staircase: the value holds until the next point (replica counts change in steps).
    pub step: bool,
    pub points: Vec<(f64, Option<f64>)>,
}

impl Series {
    /// A solid line through `points`.
    pub fn line(name: &str, color: &str, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color: color.into(),
            dashed: false,
            step: false,
            points: points.into_iter().map(|(t, v)| (t, Some(v))).collect(),
        }
    }

    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }

    pub fn stepped(mut self) -> Series {
        self.step = true;
        self
    }
}

/// A horizontal line across a panel at a value (a target, the ratio 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub value: f64,
    pub color: String,
}

/// Even, nice ticks from 0 covering `max`: about `target` of them, the last one at or above `max`. With `integer`,
/// the step is a whole number (1, 2, 5, 10, ...).
pub fn nice_ticks(max: f64, target: usize, integer: bool) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / target.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if integer {
        step = step.ceil().max(1.0);
        // 2.5 rounds up to 3, which is not nice: take 5 instead.
        if step > 2.0 && step < 5.0 {
            step = 5.0;
        }
    }
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|k| k as f64 * step).collect()
}

/// Ticks from 0 that stay within `max` (a time axis ends where the data ends).
fn ticks_within(max: f64, target: usize) -> Vec<f64> {
    let mut ticks = nice_ticks(max, target, false);
    ticks.retain(|t| *t <= max * (1.0 + 1e-9));
    ticks
}

/// A tick label with as many decimals as the step needs (so 0, 2.5, 5 and not 0.0, 2.5, 5.0).
pub fn tick_label(v: f64, step: f64) -> String {
    let mut decimals = 0;
    while decimals < 6
        && ((step * 10f64.powi(decimals)).round() - step * 10f64.powi(decimals)).abs() > 1e-6
    {
        decimals += 1;
    }
    format!("{v:.*}", decimals as usize)
}

/// Escape text for SVG content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Panel {
    fn legend_rows(&self) -> usize {
        let named = self.series.iter().filter(|s| !s.name.is_empty()).count();
        named.div_ceil(LEGEND_PER_ROW)
    }

    fn data_max(&self) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .chain(self.markers.iter().map(|m| m.value))
            .filter(|v| v.is_finite())
            .fold(self.axis.min_max, f64::max)
    }
}

impl Chart {
    /// The chart's total height.
    pub fn height(&self) -> f64 {
        let mut h = TOP;
        for p in &self.panels {
            h += p.height + UNDER + p.legend_rows() as f64 * LEGEND_ROW + ABOVE;
        }
        h + 10.0
    }

    /// The SVG document.
    pub fn render(&self) -> String {
        let w = self.width;
        let h = self.height();
        let band_w = w - LEFT - RIGHT;
        let x_max = if self.x_max.is_finite() {
            self.x_max.max(1.0)
        } else {
            1.0
        };
        let x = |t: f64| LEFT + band_w * (t / x_max).clamp(0.0, 1.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="26" font-size="15" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        let x_ticks = ticks_within(x_max, 8);
        let x_step = x_ticks.get(1).copied().unwrap_or(1.0);
        let mut y0 = TOP;
        for panel in &self.panels {
            let ph = panel.height;
            let top_value = panel
                .axis
                .cap
                .map_or(panel.data_max(), |c| panel.data_max().min(c));
            let y_ticks = nice_ticks(top_value, 5, panel.axis.integer);
            let y_max = *y_ticks.last().expect("at least two ticks");
            let y_step = y_ticks[1];
            let y = |v: f64| y0 + ph - ph * (v.min(y_max) / y_max).max(0.0);
            let _ = writeln!(
                s,
                r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
                y0 - 8.0,
                escape(&panel.title)
            );
            for v in &y_ticks {
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/>"##,
                    LEFT + band_w,
                    yy = y(*v)
                );
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}{}</text>"##,
                    LEFT - 6.0,
                    y(*v) + 4.0,
                    tick_label(*v, y_step),
                    panel.axis.unit
                );
            }
            let bottom = y0 + ph;
            for t in &x_ticks {
                let _ = writeln!(
                    s,
                    r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{bottom}" y2="{}" stroke="#999"/>"##,
                    bottom + 4.0,
                    xx = x(*t)
                );
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}s</text>"##,
                    x(*t),
                    bottom + 16.0,
                    tick_label(*t, x_step)
                );
            }
            let _ = writeln!(
                s,
                r##"<rect x="{LEFT}" y="{y0}" width="{band_w}" height="{ph}" fill="none" stroke="#999"/>"##
            );
            for m in &panel.markers {
                let _ = writeln!(
                    s,
                    r#"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" stroke-dasharray="6 4"/>"#,
                    LEFT + band_w,
                    escape(&m.color),
                    yy = y(m.value)
                );
            }
            for series in &panel.series {
                polyline(&mut s, series, &x, &y);
            }
            for (i, series) in panel
                .series
                .iter()
                .filter(|s| !s.name.is_empty())
                .enumerate()
            {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" fill="{}">{}{}</text>"#,
                    LEFT + 10.0 + (i % LEGEND_PER_ROW) as f64 * LEGEND_WIDTH,
                    bottom + UNDER + (i / LEGEND_PER_ROW) as f64 * LEGEND_ROW,
                    escape(&series.color),
                    if series.dashed { "- - " } else { "— " },
                    escape(&series.name)
                );
            }
            y0 = bottom + UNDER + panel.legend_rows() as f64 * LEGEND_ROW + ABOVE;
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="start" fill="#555">{}</text>"##,
            LEFT,
            h - 8.0,
            escape(&self.x_caption)
        );
        s.push_str("</svg>\n");
        s
    }
}

/// The series as polylines, one per run of values without a gap.
fn polyline(svg: &mut String, series: &Series, x: &dyn Fn(f64) -> f64, y: &dyn Fn(f64) -> f64) {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in &series.points {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let run = runs.last_mut().expect("one run");
                if series.step
                    && let Some(&(_, prev)) = run.last()
                {
                    run.push((x(*t), prev));
                }
                run.push((x(*t), y(v)));
            }
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let points: Vec<String> = run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{} points="{}"/>"#,
            escape(&series.color),
            if series.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            },
            points.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_cover_the_maximum_in_even_nice_steps() {
        assert_eq!(nice_ticks(3.0, 5, true), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(13.0, 5, true), [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(
            nice_ticks(1.0, 5, false),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(0.0, 5, false).last(), Some(&1.0));
        assert_eq!(
            nice_ticks(247.0, 5, false),
            [0.0, 50.0, 100.0, 150.0, 200.0, 250.0]
        );
        assert_eq!(ticks_within(247.0, 8).last(), Some(&200.0));
        assert_eq!(nice_ticks(12.0, 5, false)[1], 2.5);
        assert_eq!(nice_ticks(12.0, 5, true)[1], 5.0);
    }

    #[test]
    fn labels_carry_the_decimals_of_the_step() {
        assert_eq!(tick_label(5.0, 2.5), "5.0");
        assert_eq!(tick_label(7.5, 2.5), "7.5");
        assert_eq!(tick_label(100.0, 50.0), "100");
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
    }

    #[test]
    fn gaps_split_lines_and_steps_hold_the_value() {
        let chart = Chart {
            title: "a & b".into(),
            width: 400.0,
            x_max: 10.0,
            x_caption: "seconds".into(),
            panels: vec![Panel {
                title: "replicas".into(),
                height: 100.0,
                axis: Axis {
                    integer: true,
                    ..Axis::default()
                },
                series: vec![Series {
                    name: "n<1>".into(),
                    color: "#000".into(),
                    dashed: false,
                    step: true,
                    points: vec![
                        (0.0, Some(1.0)),
                        (5.0, Some(2.0)),
                        (6.0, None),
                        (8.0, Some(2.0)),
                    ],
                }],
                markers: vec![],
            }],
        };
        let svg = chart.render();
        assert!(svg.contains("a &amp; b") && svg.contains("n&lt;1&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // the step at t=5 first holds 1 replica, then rises to 2
        assert!(
            svg.contains("points=\"70.0,112.0 225.0,112.0 225.0,62.0\""),
            "{svg}"
        );
    }
}
