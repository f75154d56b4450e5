//! A parser for the Prometheus text exposition format (version 0.0.4), enough to read the consumer's `/metrics` for the
//! direct source: samples with labels and values; comments, `# HELP`/`# TYPE` lines and timestamps are skipped.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Labels sorted by name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The label's value, or "" when absent (as in PromQL).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    }

    /// A canonical identity `name{a="1",b="2"}` (labels sorted), to follow one series across scrapes.
    pub fn series_key(&self) -> String {
        let mut key = self.name.clone();
        key.push('{');
        for (i, (label, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(label);
            key.push_str("=\"");
            key.push_str(&crate::trigger::escape_label_value(value));
            key.push('"');
        }
        key.push('}');
        key
    }
}

/// Label pairs of one sample.
pub type Labels = Vec<(String, String)>;

/// A line that is not valid exposition text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses exposition text, keeping only samples whose metric name passes `keep` (so large pages cost little memory).
pub fn parse(text: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: &str| ParseError {
            line: index + 1,
            reason: reason.to_string(),
        };
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(fail("expected a metric name"));
        }
        if !keep(name) {
            continue;
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after_brace) = rest.strip_prefix('{') {
            let (parsed, remaining) = parse_labels(after_brace).map_err(|reason| fail(&reason))?;
            labels = parsed;
            rest = remaining;
        }
        let mut fields = rest.split_whitespace();
        let value_text = fields.next().ok_or_else(|| fail("missing value"))?;
        let value = parse_value(value_text).ok_or_else(|| fail("value is not a number"))?;
        labels.sort();
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse::<f64>().ok(),
    }
}

/// Parses `a="1",b="2"}` (after the opening brace); returns the labels and the text after the closing brace.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label set")?;
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err("expected a label name".into());
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected = after label `{name}`"))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label `{name}` is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_special_values_and_timestamps() {
        let text = r#"# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{route="/load/cpu",method="GET",status="200"} 12
requests_total{method="GET",route="/a\"b\\c\nd",status="500",} 3 1700000000000
duration_seconds_bucket{le="+Inf",route="/x"} +Inf
jobs_queued 4.5e1
start_time_seconds NaN
other_metric{a="b"} 1
"#;
        let samples = parse(text, |name| name != "other_metric").unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].label("route"), "/load/cpu");
        assert_eq!(samples[0].labels[0].0, "method", "labels are sorted");
        assert_eq!(samples[1].label("route"), "/a\"b\\c\nd");
        assert_eq!(samples[1].value, 3.0);
        assert!(samples[2].value.is_infinite());
        assert_eq!(samples[3].value, 45.0);
        assert!(samples[4].value.is_nan());
        assert_eq!(
            samples[0].series_key(),
            r#"requests_total{method="GET",route="/load/cpu",status="200"}"#
        );
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        for bad in [
            "x{a=\"1\"",
            "x{a=1} 2",
            "x 1\n{a=\"1\"} 2",
            "x abc",
            "x",
            "x{a=\"1} 2",
        ] {
            let err = parse(bad, |_| true).expect_err(bad);
            assert!(err.line >= 1, "{bad}: {err}");
        }
        assert_eq!(parse("ok 1\nbad", |_| true).unwrap_err().line, 2);
    }
}
