//! `triggers.svg`: what the controller saw and did, from its own log, drawn with the generator's chart writer
//! ([`load::chart`]). Top: each trigger's usage ratio as the HPA computes it (value / (target x replicas) for
//! AverageValue, value / target for Value) against the line at 1 where it asks for no change; bottom: desired and
//! current replicas at each step.

use load::chart::{Axis, Chart, Marker, Panel, Series};

use crate::view::DecisionRecord;

const PANEL: f64 = 200.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The usage ratio the HPA compares with 1 (`autoscaler::hpa::usage_ratio`), per replica at least one so that a
/// scale-from-zero moment still has a point on the chart; None when the trigger had no value.
fn ratio(metric_type: &str, value: Option<f64>, target: f64, current: u32) -> Option<f64> {
    let metric_type = metric_type.parse().ok()?;
    autoscaler::hpa::usage_ratio(metric_type, value?, target, current.max(1))
}

/// The chart of a controller log: usage ratios per trigger, then desired and current replicas.
pub fn chart(decisions: &[DecisionRecord], title: &str) -> Chart {
    let t_max = decisions.last().map(|d| d.t_s).unwrap_or(1.0).max(1.0);
    let names: Vec<String> = decisions
        .first()
        .map(|d| d.metrics.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    let ratios: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.clone(),
            color: COLORS[i % COLORS.len()].into(),
            dashed: false,
            step: false,
            points: decisions
                .iter()
                .map(|d| {
                    let r = d
                        .metrics
                        .iter()
                        .find(|m| &m.name == name)
                        .and_then(|m| ratio(&m.metric_type, m.value, m.target, d.current));
                    (d.t_s, r)
                })
                .collect(),
        })
        .collect();
    let replicas = |f: fn(&DecisionRecord) -> u32| -> Vec<(f64, f64)> {
        decisions.iter().map(|d| (d.t_s, f64::from(f(d)))).collect()
    };
    Chart {
        title: title.to_string(),
        width: 960.0,
        x_max: t_max,
        x_caption: format!("seconds since the load started (0 - {t_max:.0})"),
        panels: vec![
            Panel {
                title: "usage ratio per trigger (1 = at target; above asks for more replicas)"
                    .into(),
                height: PANEL,
                // Capped so one spike does not flatten the rest; at least 2 so the line at 1 sits mid-panel.
                axis: Axis {
                    min_max: 2.0,
                    cap: Some(20.0),
                    ..Axis::default()
                },
                series: ratios,
                markers: vec![Marker {
                    value: 1.0,
                    color: "#444".into(),
                }],
            },
            Panel {
                title: "replicas at each controller step".into(),
                height: PANEL,
                axis: Axis {
                    integer: true,
                    min_max: 2.0,
                    ..Axis::default()
                },
                series: vec![
                    Series::line("desired", "#9467bd", replicas(|d| d.desired)).stepped(),
                    Series::line("current", "#8c564b", replicas(|d| d.current)).stepped(),
                ],
                markers: Vec::new(),
            },
        ],
    }
}

/// Render the chart; an empty log gives a chart that says so.
pub fn render(decisions: &[DecisionRecord], title: &str) -> String {
    if decisions.is_empty() {
        return format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="100" viewBox="0 0 960 100" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="70" y="20" font-size="15" font-weight="bold">{}</text><text x="70" y="60">no controller steps were logged</text></svg>"#,
            load::chart::escape(title)
        );
    }
    chart(decisions, title).render()
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
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("lab &amp; demo"));
        assert!(svg.contains("backlog&lt;1&gt;"));
        // The missing value splits the trigger's line; replicas draw as staircases.
        assert!(svg.matches("<polyline").count() >= 4, "{svg}");
        assert!(render(&[], "empty").contains("no controller steps"));
    }
}

#[cfg(test)]
mod axis_tests {
    use super::*;
    use crate::view::MetricRecord;

    fn step(t: f64, current: u32, desired: u32, value: f64) -> DecisionRecord {
        DecisionRecord {
            t_s: t,
            current,
            ready: current,
            desired,
            active: true,
            winner: None,
            raw: Some(desired),
            reason: String::new(),
            metrics: vec![MetricRecord {
                name: "backlog".into(),
                metric_type: "AverageValue".into(),
                value: Some(value),
                target: 3.0,
                active: true,
                proposal: Some(desired),
                status: "ok".into(),
            }],
        }
    }

    /// The replica axis counts whole replicas at even steps; every tick sits on its axis (triggers.svg once drew
    /// "1" at 1.7 replicas).
    #[test]
    fn triggers_chart_ticks_are_even_whole_and_on_their_axes() {
        for peak in [3u32, 2, 5, 7, 13] {
            let decisions: Vec<DecisionRecord> = (0..120)
                .map(|i| {
                    let n = 1 + (i * peak / 120).min(peak - 1);
                    step(f64::from(i) * 0.5, n, n, f64::from(i % 9))
                })
                .collect();
            let svg = render(&decisions, "demo");
            testkit::svg::check_chart(&svg, |title| title.starts_with("replicas"))
                .unwrap_or_else(|e| panic!("peak {peak}: {e}\n{svg}"));
        }
    }
}
