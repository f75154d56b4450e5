//! `triggers.svg`: what the controller saw and did, from its own log. Top: each trigger's usage ratio as
//! the HPA computes it (value / (target x replicas) for AverageValue, value / target for Value) against the
//! line at 1 where it asks for no change; bottom: desired and current replicas at each step.

use std::fmt::Write;

use crate::view::DecisionRecord;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 200.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The usage ratio the HPA compares with 1 (None when the trigger had no value).
fn ratio(metric_type: &str, value: Option<f64>, target: f64, current: u32) -> Option<f64> {
    let value = value?;
    if target <= 0.0 {
        return None;
    }
    match metric_type {
        "Value" => Some(value / target),
        _ => Some(value / (target * current.max(1) as f64)),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Render the chart; an empty log gives a chart that says so.
pub fn render(decisions: &[DecisionRecord], title: &str) -> String {
    let height = 2.0 * PANEL + 130.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    if decisions.is_empty() {
        svg.push_str(r#"<text x="70" y="60">no controller steps were logged</text></svg>"#);
        return svg;
    }
    let t_max = decisions.last().map(|d| d.t_s).unwrap_or(1.0).max(1.0);
    let x = |t: f64| LEFT + (t / t_max) * (WIDTH - LEFT - RIGHT);
    let names: Vec<String> = decisions[0]
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .collect();

    // Panel 1: usage ratios, capped so one spike does not flatten the rest.
    let top = 40.0;
    let ratios: Vec<Vec<Option<f64>>> = names
        .iter()
        .map(|name| {
            decisions
                .iter()
                .map(|d| {
                    d.metrics
                        .iter()
                        .find(|m| &m.name == name)
                        .and_then(|m| ratio(&m.metric_type, m.value, m.target, d.current))
                })
                .collect()
        })
        .collect();
    let observed_max = ratios
        .iter()
        .flatten()
        .flatten()
        .fold(1.0f64, |a, &b| a.max(b));
    let r_max = observed_max.clamp(2.0, 20.0);
    let y1 = |r: f64| top + PANEL - (r.min(r_max) / r_max) * PANEL;
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-weight="bold">usage ratio per trigger (1 = at target; above asks for more replicas)</text>"##,
        top - 5.0
    );
    axes(&mut svg, top, r_max, |v| format!("{v:.1}"));
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#444" stroke-dasharray="6 4"/>"##,
        WIDTH - RIGHT,
        y = y1(1.0)
    );
    for (i, (name, series)) in names.iter().zip(&ratios).enumerate() {
        let color = COLORS[i % COLORS.len()];
        polyline(
            &mut svg,
            decisions.iter().map(|d| d.t_s).zip(series.iter().copied()),
            &x,
            &y1,
            color,
            false,
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            LEFT + 10.0 + (i as f64 % 4.0) * 210.0,
            top + PANEL + 18.0 + (i / 4) as f64 * 14.0,
            escape(name)
        );
    }

    // Panel 2: replicas.
    let top2 = top + PANEL + 70.0;
    let n_max = decisions
        .iter()
        .map(|d| d.desired.max(d.current))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let y2 = |n: f64| top2 + PANEL - (n / n_max) * PANEL;
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-weight="bold">replicas at each controller step: desired (purple), current (brown)</text>"##,
        top2 - 5.0
    );
    axes(&mut svg, top2, n_max, |v| format!("{v:.0}"));
    let desired = decisions.iter().map(|d| (d.t_s, Some(d.desired as f64)));
    polyline(&mut svg, desired, &x, &y2, "#9467bd", true);
    let current = decisions.iter().map(|d| (d.t_s, Some(d.current as f64)));
    polyline(&mut svg, current, &x, &y2, "#8c564b", true);
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">seconds since the load started (0 - {t_max:.0})</text>"##,
        WIDTH - RIGHT,
        top2 + PANEL + 20.0
    );
    svg.push_str("</svg>");
    svg
}

fn axes(svg: &mut String, top: f64, max: f64, label: impl Fn(f64) -> String) {
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#bbb"/>"##,
        WIDTH - LEFT - RIGHT
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = top + PANEL - PANEL * k as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            label(v)
        );
    }
}

/// A line through the points; `step` draws it as a staircase (replica counts change in steps).
fn polyline(
    svg: &mut String,
    points: impl Iterator<Item = (f64, Option<f64>)>,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
    color: &str,
    step: bool,
) {
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in points {
        match v {
            Some(v) => {
                let seg = segments.last_mut().expect("one segment");
                if step && let Some(&(_, prev)) = seg.last() {
                    seg.push((x(t), prev));
                }
                seg.push((x(t), y(v)));
            }
            None => segments.push(Vec::new()),
        }
    }
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        let pts: Vec<String> = seg.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MetricRecord;

    fn record(t: f64, current: u32, desired: u32, value: Option<f64>) -> DecisionRecord {
        DecisionRecord {
            t_s: t,
            current,
            ready: current,
            desired,
            active: true,
            winner: Some("backlog".into()),
            raw: Some(desired),
            reason: String::new(),
            metrics: vec![MetricRecord {
                name: "backlog<1>".into(),
                metric_type: "AverageValue".into(),
                value,
                target: 3.0,
                active: true,
                proposal: Some(desired),
                status: "ok".into(),
            }],
        }
    }

    #[test]
    fn ratios_follow_the_hpa() {
        assert_eq!(ratio("AverageValue", Some(12.0), 3.0, 2), Some(2.0));
        assert_eq!(ratio("Value", Some(0.25), 0.5, 4), Some(0.5));
        assert_eq!(ratio("Value", None, 0.5, 4), None);
        assert_eq!(ratio("AverageValue", Some(1.0), 0.0, 1), None);
    }

    #[test]
    fn renders_lines_and_escapes_names() {
        let svg = render(
            &[
                record(0.0, 1, 1, Some(1.0)),
                record(2.5, 1, 3, None),
                record(5.0, 3, 3, Some(9.0)),
            ],
            "lab & demo",
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("lab &amp; demo"));
        assert!(svg.contains("backlog&lt;1&gt;"));
        // The missing value splits the trigger's line; replicas draw as staircases.
        assert!(svg.matches("<polyline").count() >= 4, "{svg}");
        assert!(render(&[], "empty").contains("no controller steps"));
    }
}
