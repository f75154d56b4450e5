//! Reading the lab's SVG charts back for tests: each panel's plot band and the tick labels of its axes, found by
//! geometry (a `<rect fill="none">` is a plot band; `text-anchor="end"` labels left of it are its value axis,
//! `text-anchor="middle"` labels just under it are its time axis), so a chart that misplaces a label is caught
//! whatever it calls its elements. [`check_axis`] states what a readable axis is.

/// One panel of a chart: its title (the bold text just above the band), its plot band and its tick labels.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelAxes {
    pub title: String,
    /// x, y, width, height of the plot band.
    pub band: (f64, f64, f64, f64),
    /// Time-axis labels: (x position, text), in document order.
    pub x_ticks: Vec<(f64, String)>,
    /// Value-axis labels: (y position, text), in document order.
    pub y_ticks: Vec<(f64, String)>,
}

fn num(node: roxmltree::Node<'_, '_>, name: &str) -> Result<f64, String> {
    let raw = node
        .attribute(name)
        .ok_or_else(|| format!("<{}> without {name}", node.tag_name().name()))?;
    raw.parse().map_err(|_| {
        format!(
            "<{}> {name}={raw:?} is not a number",
            node.tag_name().name()
        )
    })
}

/// The panels of a chart with their tick labels. Fails when the SVG does not parse, or when a tick-like label (a
/// centred one) lies under no panel's band: that label is drawn where no axis is.
pub fn panels(svg: &str) -> Result<Vec<PanelAxes>, String> {
    let doc = roxmltree::Document::parse(svg).map_err(|e| format!("not XML: {e}"))?;
    let mut panels = Vec::new();
    for rect in doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("none"))
    {
        let band = (
            num(rect, "x")?,
            num(rect, "y")?,
            num(rect, "width")?,
            num(rect, "height")?,
        );
        panels.push(PanelAxes {
            title: String::new(),
            band,
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
        });
    }
    if panels.is_empty() {
        return Err("no plot band (<rect fill=\"none\">) in the chart".into());
    }
    for text in doc.descendants().filter(|n| n.has_tag_name("text")) {
        let label: String = text
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<String>();
        let (x, y) = (num(text, "x")?, num(text, "y")?);
        match text.attribute("text-anchor") {
            Some("end") => {
                // A value label sits left of its band, within the band's height (plus half a line of text).
                if let Some(p) = panels
                    .iter_mut()
                    .find(|p| x < p.band.0 && y >= p.band.1 - 2.0 && y <= p.band.1 + p.band.3 + 8.0)
                {
                    p.y_ticks.push((y, label));
                }
            }
            Some("middle") => {
                let Some(p) = panels.iter_mut().find(|p| {
                    let bottom = p.band.1 + p.band.3;
                    y > bottom && y <= bottom + 25.0
                }) else {
                    return Err(format!(
                        "time label {label:?} at ({x}, {y}) lies under no panel's axis band"
                    ));
                };
                p.x_ticks.push((x, label));
            }
            _ => {
                if text.attribute("font-weight") == Some("bold")
                    && let Some(p) = panels
                        .iter_mut()
                        .find(|p| y < p.band.1 && y >= p.band.1 - 20.0)
                {
                    p.title = label;
                }
            }
        }
    }
    Ok(panels)
}

/// The number a tick label shows (`250ms`, `12/s`, `30s`, `1.5` give 250, 12, 30, 1.5).
pub fn label_value(label: &str) -> Option<f64> {
    let end = label
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(label.len());
    label[..end].parse().ok()
}

/// What makes an axis readable: at least two ticks, inside the band (`lo..=hi` in the axis direction), in order,
/// evenly spaced both on the page and in value, a "nice" step (1, 2, 2.5 or 5 times a power of ten), and whole
/// numbers when `integer` (replica counts). `increasing` says whether the page coordinate grows with the value
/// (a time axis) or shrinks (a value axis, y pointing down).
pub fn check_axis(
    ticks: &[(f64, String)],
    lo: f64,
    hi: f64,
    increasing: bool,
    integer: bool,
) -> Result<(), String> {
    if ticks.len() < 2 {
        return Err(format!("fewer than two ticks: {ticks:?}"));
    }
    let mut points = Vec::new();
    for (pos, label) in ticks {
        let v = label_value(label).ok_or_else(|| format!("tick label {label:?} is no number"))?;
        if *pos < lo - 0.5 || *pos > hi + 0.5 {
            return Err(format!(
                "tick {label:?} at {pos} lies outside the axis band {lo}..{hi}"
            ));
        }
        if integer && v.fract() != 0.0 {
            return Err(format!(
                "tick {label:?} on a count axis is not a whole number"
            ));
        }
        points.push((*pos, v));
    }
    let step_pos = points[1].0 - points[0].0;
    let step_val = points[1].1 - points[0].1;
    if step_val <= 0.0 {
        return Err(format!("ticks not in increasing value order: {ticks:?}"));
    }
    if (step_pos > 0.0) != increasing || step_pos == 0.0 {
        return Err(format!("ticks run the wrong way along the axis: {ticks:?}"));
    }
    for w in points.windows(2) {
        let (dp, dv) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
        if (dp - step_pos).abs() > 0.6 {
            return Err(format!("ticks unevenly spaced on the page: {ticks:?}"));
        }
        if (dv - step_val).abs() > step_val * 1e-6 {
            return Err(format!("tick values unevenly spaced: {ticks:?}"));
        }
    }
    let magnitude = 10f64.powf(step_val.log10().floor());
    let mantissa = step_val / magnitude;
    if ![1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        return Err(format!(
            "tick step {step_val} is not a nice number (1, 2, 2.5 or 5 x 10^k): {ticks:?}"
        ));
    }
    Ok(())
}

/// [`check_axis`] on both axes of every panel: value labels inside the band's height, time labels inside its width.
/// `integer_panel` says which panels count whole things (by title).
pub fn check_chart(svg: &str, integer_panel: impl Fn(&str) -> bool) -> Result<(), String> {
    for p in panels(svg)? {
        let (x, y, w, h) = p.band;
        // Value labels are drawn 4 px below their tick's height so they centre on it.
        let y_ticks: Vec<(f64, String)> = p
            .y_ticks
            .iter()
            .map(|(v, l)| (v - 4.0, l.clone()))
            .collect();
        check_axis(&y_ticks, y, y + h, false, integer_panel(&p.title))
            .map_err(|e| format!("panel {:?} value axis: {e}", p.title))?;
        check_axis(&p.x_ticks, x, x + w, true, false)
            .map_err(|e| format!("panel {:?} time axis: {e}", p.title))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(list: &[(f64, &str)]) -> Vec<(f64, String)> {
        list.iter().map(|(p, l)| (*p, l.to_string())).collect()
    }

    #[test]
    fn a_readable_axis_passes_and_each_fault_is_named() {
        let good = ticks(&[(100.0, "0"), (150.0, "5"), (200.0, "10")]);
        assert_eq!(check_axis(&good, 100.0, 200.0, true, true), Ok(()));
        let uneven = ticks(&[(100.0, "0"), (150.0, "1"), (160.0, "2")]);
        assert!(check_axis(&uneven, 0.0, 300.0, true, true).is_err());
        let fraction = ticks(&[(0.0, "0"), (10.0, "0.5"), (20.0, "1")]);
        assert!(check_axis(&fraction, 0.0, 20.0, true, true).is_err());
        assert!(check_axis(&fraction, 0.0, 20.0, true, false).is_ok());
        let odd_step = ticks(&[(0.0, "0"), (10.0, "0.75"), (20.0, "1.5")]);
        assert!(check_axis(&odd_step, 0.0, 20.0, true, false).is_err());
        assert!(
            check_axis(&good, 120.0, 200.0, true, false).is_err(),
            "outside"
        );
        assert!(
            check_axis(&good, 100.0, 200.0, false, false).is_err(),
            "direction"
        );
        assert_eq!(label_value("250ms"), Some(250.0));
        assert_eq!(label_value("1.5/s"), Some(1.5));
    }

    #[test]
    fn a_label_under_no_band_is_an_error() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg"><rect x="70" y="60" width="800" height="100" fill="none"/>
            <text x="70" y="0" text-anchor="middle">247s</text></svg>"#;
        assert!(panels(svg).unwrap_err().contains("247s"));
    }
}
