//! The `selector` metadata grammar: comma-separated PromQL label matchers (`namespace="lab", pod=~"consumer-.*"`), how
//! a matcher prints back as PromQL, and how an equality matcher filters scraped series (direct source).

use std::collections::BTreeMap;
use std::fmt;

use super::TriggerError;

/// Comparison of a label matcher, as in PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One label matcher of the `selector` metadata, e.g. `namespace="autoscaling-lab"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Whether a series with these labels passes (equality matchers only; regex ones are refused for direct sources).
    /// An absent label compares as the empty string, as in PromQL.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let actual = labels
            .iter()
            .find(|(name, _)| *name == self.label)
            .map(|(_, value)| value.as_str())
            .unwrap_or("");
        match self.op {
            MatchOp::Eq => actual == self.value,
            MatchOp::Ne => actual != self.value,
            // Never reached for direct sources (refused at parse time); conservative answer otherwise.
            MatchOp::Re | MatchOp::NotRe => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.label,
            self.op.as_str(),
            escape_label_value(&self.value)
        )
    }
}

/// Parses `label="value", other!="x"` (PromQL matcher syntax, without braces; braces around it are tolerated).
pub fn parse_selector(raw: &str) -> Result<Vec<Matcher>, TriggerError> {
    const ALLOWED: &str = "comma-separated PromQL label matchers, e.g. namespace=\"autoscaling-lab\",pod=~\"consumer-.*\"";
    let bad = |reason: &str| TriggerError::invalid("selector", raw, reason, ALLOWED);
    let text = raw.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let mut matchers: BTreeMap<String, Matcher> = BTreeMap::new();
    let skip_ws = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos].is_whitespace() {
            *pos += 1;
        }
    };
    loop {
        skip_ws(&mut pos);
        if pos >= chars.len() {
            break;
        }
        let start = pos;
        while pos < chars.len() && (chars[pos].is_ascii_alphanumeric() || chars[pos] == '_') {
            pos += 1;
        }
        let label: String = chars[start..pos].iter().collect();
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("expected a label name"));
        }
        skip_ws(&mut pos);
        let op = match (chars.get(pos), chars.get(pos + 1)) {
            (Some('='), Some('~')) => MatchOp::Re,
            (Some('!'), Some('=')) => MatchOp::Ne,
            (Some('!'), Some('~')) => MatchOp::NotRe,
            (Some('='), _) => MatchOp::Eq,
            _ => return Err(bad(&format!("expected =, !=, =~ or !~ after `{label}`"))),
        };
        pos += if op == MatchOp::Eq { 1 } else { 2 };
        skip_ws(&mut pos);
        if chars.get(pos) != Some(&'"') {
            return Err(bad(&format!(
                "the value of `{label}` must be double-quoted"
            )));
        }
        pos += 1;
        let mut value = String::new();
        loop {
            match chars.get(pos) {
                None => return Err(bad("unterminated quoted value")),
                Some('"') => {
                    pos += 1;
                    break;
                }
                Some('\\') => {
                    match chars.get(pos + 1) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(*c),
                        _ => return Err(bad("invalid escape in quoted value")),
                    }
                    pos += 2;
                }
                Some(c) => {
                    value.push(*c);
                    pos += 1;
                }
            }
        }
        let key = format!("{label}{}", op.as_str());
        if matchers.contains_key(&key) {
            return Err(bad(&format!("`{label}` is matched twice")));
        }
        matchers.insert(key, Matcher { label, op, value });
        skip_ws(&mut pos);
        match chars.get(pos) {
            None => break,
            Some(',') => pos += 1,
            Some(c) => {
                return Err(bad(&format!(
                    "unexpected `{c}`; separate matchers with commas"
                )));
            }
        }
    }
    if matchers.is_empty() {
        return Err(bad("no matcher given"));
    }
    Ok(matchers.into_values().collect())
}

/// Escapes a label value for PromQL / exposition text.
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parsing_handles_escapes_and_all_operators() {
        let matchers =
            parse_selector(r#"{ namespace="lab" , pod=~"consumer-.*", path!="a\"b", x!~"y" }"#)
                .unwrap();
        assert_eq!(matchers.len(), 4);
        let path = matchers.iter().find(|m| m.label == "path").unwrap();
        assert_eq!(path.value, "a\"b");
        assert_eq!(path.to_string(), r#"path!="a\"b""#);
        let labels = vec![("namespace".to_string(), "lab".to_string())];
        let ns = matchers.iter().find(|m| m.label == "namespace").unwrap();
        assert!(ns.matches(&labels));
        assert!(!ns.matches(&[]));
    }
}
