//! Load profiles: stages of arrival rate (ramp or hold) plus a weighted request mix, the built-in set, YAML I/O,
//! and the arrival [`Schedule`] that turns stages into exact request start times.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod builtin;
#[cfg(test)]
mod chaos_yaml_tests;
mod schedule;

use builtin::BUILTIN_NAMES;
use chaos_spec::ChaosSpec;
use contract::duration_text;
pub use schedule::Schedule;

/// Why a profile could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The YAML did not parse; serde_norway's message names the field path, line and column.
    #[error("profile YAML: {0}")]
    Yaml(String),
    /// The YAML parsed but a field's value is out of range.
    #[error("profile field `{field}`{}: {reason}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Invalid {
        field: String,
        reason: String,
        /// Where the field is in the YAML, when known.
        line: Option<usize>,
    },
    #[error("unknown profile `{name}`; built-in profiles: {known}")]
    Unknown { name: String, known: String },
    #[error("cannot read profile file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A named load profile: stages of arrival rate and a weighted request mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Arrival rate (req/s) at t = 0, where the first ramp starts from.
    #[serde(default)]
    pub start_rate: f64,
    pub stages: Vec<Stage>,
    pub requests: Vec<RequestSpec>,
    /// Recycle keep-alive connections so new replicas get traffic (see `RecyclePolicy`); profiles default to on.
    #[serde(default = "default_true")]
    pub recycle_connections: bool,
    /// Faults injected during the load (`chaos:`): lab actions by the lab, cluster actions by `generator run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosSpec>,
    /// What the faults may cost, e.g. `recovery<30s,lost<0.1%` (the lab's `--chaos-threshold` syntax; the flag wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos_thresholds: Option<String>,
}

fn default_true() -> bool {
    true
}

/// One stage: over `duration`, the arrival rate either ramps linearly from the previous stage's end rate to `rate`
/// (`ramp: true`) or holds at `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// Target arrival rate in requests per second (at the end of the stage when ramping).
    pub rate: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ramp: bool,
}

/// One entry of the request mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Name in the report (default: `METHOD path`, plus ` mode` when the body sets `mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_method() -> String {
    "POST".to_string()
}
fn default_weight() -> u32 {
    1
}

impl RequestSpec {
    /// A request entry with weight 1.
    pub fn new(method: &str, path: &str, body: Option<serde_json::Value>) -> RequestSpec {
        RequestSpec {
            name: None,
            method: method.to_string(),
            path: path.to_string(),
            body,
            weight: 1,
        }
    }

    /// The name used in reports: the explicit name, else `METHOD path[ mode]`.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mode = self
            .body
            .as_ref()
            .and_then(|b| b.get("mode"))
            .and_then(|m| m.as_str());
        match mode {
            Some(mode) => format!("{} {} {}", self.method, self.path, mode),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// The 1-based line of a field path like `stages[2].rate` in block-style YAML (flow-style items resolve to the item's
/// line). A best effort for error messages: `None` when the text is laid out in a way it does not follow.
fn locate_field(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let (head, rest) = path
        .split_once('.')
        .map_or((path, None), |(h, r)| (h, Some(r)));
    let (key, index) = match head.split_once('[') {
        Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
        None => (head, None),
    };
    let top = lines
        .iter()
        .position(|l| indent(l) == 0 && l.starts_with(&format!("{key}:")))?;
    let Some(index) = index else {
        return Some(top + 1);
    };
    // Items of the sequence: lines starting with `- ` at the first item's indentation, until the next top-level key.
    let mut item_indent = None;
    let mut items = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(top + 1) {
        if !is_content(l) {
            continue;
        }
        if indent(l) == 0 && !l.starts_with("- ") {
            break;
        }
        if l.trim_start().starts_with("- ") && item_indent.is_none_or(|n| n == indent(l)) {
            item_indent = Some(indent(l));
            items.push(i);
        }
    }
    let start = *items.get(index)?;
    let end = items.get(index + 1).copied().unwrap_or(lines.len());
    let Some(sub) = rest else {
        return Some(start + 1);
    };
    let found = (start..end).find(|&i| {
        let t = lines[i].trim_start().trim_start_matches("- ").trim_start();
        t.starts_with(&format!("{sub}:")) || t.starts_with('{') && t.contains(&format!("{sub}:"))
    });
    Some(found.unwrap_or(start) + 1)
}

impl Profile {
    /// A built-in profile, or an error listing the known names.
    pub fn builtin_or_err(name: &str) -> Result<Profile, ProfileError> {
        Profile::builtin(name).ok_or_else(|| ProfileError::Unknown {
            name: name.to_string(),
            known: BUILTIN_NAMES.join(", "),
        })
    }

    /// Parse and validate a profile from YAML (the format `generator profiles show` prints).
    pub fn from_yaml(text: &str) -> Result<Profile, ProfileError> {
        let profile: Profile =
            serde_norway::from_str(text).map_err(|e| ProfileError::Yaml(e.to_string()))?;
        profile.validate().map_err(|e| match e {
            ProfileError::Invalid { field, reason, .. } => ProfileError::Invalid {
                line: locate_field(text, &field),
                field,
                reason,
            },
            other => other,
        })?;
        Ok(profile)
    }

    /// Read a profile file.
    pub fn from_file(path: &std::path::Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Profile::from_yaml(&text)
    }

    /// Render as YAML; `from_yaml(to_yaml())` gives back the same profile.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a profile always serializes")
    }

    /// Check every field's range.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |field: String, reason: &str| {
            Err(ProfileError::Invalid {
                field,
                reason: reason.to_string(),
                line: None,
            })
        };
        if self.name.trim().is_empty() {
            return bad("name".into(), "must not be empty");
        }
        if !self.start_rate.is_finite() || self.start_rate < 0.0 {
            return bad("start_rate".into(), "must be a finite number >= 0");
        }
        if self.stages.is_empty() {
            return bad("stages".into(), "needs at least one stage");
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.duration.is_zero() {
                return bad(format!("stages[{i}].duration"), "must be > 0");
            }
            if !s.rate.is_finite() || s.rate < 0.0 || s.rate > 1_000_000.0 {
                return bad(
                    format!("stages[{i}].rate"),
                    "must be between 0 and 1000000 req/s",
                );
            }
        }
        if self.requests.is_empty() {
            return bad("requests".into(), "needs at least one request entry");
        }
        for (i, r) in self.requests.iter().enumerate() {
            if http::Method::from_bytes(r.method.as_bytes()).is_err() {
                return bad(format!("requests[{i}].method"), "is not an HTTP method");
            }
            if !r.path.starts_with('/') || r.path.parse::<http::uri::PathAndQuery>().is_err() {
                return bad(
                    format!("requests[{i}].path"),
                    "must be a path starting with `/`",
                );
            }
            if r.weight == 0 {
                return bad(format!("requests[{i}].weight"), "must be >= 1");
            }
        }
        let load = self.duration();
        for (i, c) in self.chaos.iter().enumerate() {
            if let Err((field, reason)) = c.check(Some(load)) {
                return bad(format!("chaos[{i}].{field}"), &reason);
            }
        }
        if self.stages.iter().all(|s| s.rate == 0.0) && self.start_rate == 0.0 {
            return bad(
                "stages".into(),
                "every rate is 0: the profile would send nothing",
            );
        }
        Ok(())
    }

    /// Total duration of all stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Highest arrival rate reached.
    pub fn peak_rate(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.rate)
            .fold(self.start_rate, f64::max)
    }

    /// Expected number of requests over the whole profile.
    pub fn expected_requests(&self) -> f64 {
        Schedule::new(self).total_count()
    }

    /// Every stage duration multiplied by `factor` (the lab's `--time-scale`; 0.1 = ten times faster). Rates stay.
    pub fn scale_time(&self, factor: f64) -> Profile {
        let mut p = self.clone();
        for s in &mut p.stages {
            s.duration = s
                .duration
                .mul_f64(factor.max(0.0))
                .max(Duration::from_millis(1));
        }
        p.chaos = self.chaos.iter().map(|c| c.scale_time(factor)).collect();
        p
    }

    /// Every rate multiplied by `factor` (`--rate-scale`).
    pub fn scale_rate(&self, factor: f64) -> Profile {
        let mut p = self.clone();
        p.start_rate *= factor;
        for s in &mut p.stages {
            s.rate *= factor;
        }
        p
    }

    /// A profile cut (or extended, by stretching the last stage) to exactly `total` (`--duration`).
    pub fn with_duration(&self, total: Duration) -> Profile {
        let mut p = self.clone();
        let mut kept = Vec::new();
        let mut used = Duration::ZERO;
        for s in &p.stages {
            if used >= total {
                break;
            }
            let mut s = s.clone();
            if used + s.duration > total {
                s.duration = total - used;
            }
            used += s.duration;
            kept.push(s);
        }
        if used < total
            && let Some(last) = kept.last_mut()
        {
            last.duration += total - used;
        }
        p.stages = kept;
        p
    }

    /// A one-stage constant-rate profile for ad-hoc runs (`--rate R --duration D`).
    pub fn constant(rate: f64, duration: Duration, request: RequestSpec) -> Profile {
        Profile {
            name: "ad-hoc".into(),
            description: format!("constant {rate} req/s"),
            start_rate: rate,
            stages: vec![Stage {
                name: Some("constant".into()),
                duration,
                rate,
                ramp: false,
            }],
            requests: vec![request],
            recycle_connections: false,
            chaos: Vec::new(),
            chaos_thresholds: None,
        }
    }

    /// One line describing the request mix, for `generator profiles`.
    /// The stages in a line: `30s hold 5, 1m ramp to 50`.
    pub fn stages_summary(&self) -> String {
        self.stages
            .iter()
            .map(|st| {
                format!(
                    "{} {}{}",
                    humantime::format_duration(st.duration),
                    if st.ramp { "ramp to " } else { "hold " },
                    st.rate
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn mix_summary(&self) -> String {
        let total: u32 = self.requests.iter().map(|r| r.weight).sum();
        self.requests
            .iter()
            .map(|r| {
                format!(
                    "{:.0}% {}",
                    100.0 * r.weight as f64 / total as f64,
                    r.display_name()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trip_and_errors() {
        let p = Profile::builtin("sustained").unwrap();
        assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
        let err = Profile::from_yaml(
            "name: x\nstages:\n  - duration: 10s\n    rate: fast\nrequests: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("stages[0].rate") && err.contains("line 4"),
            "{err}"
        );
        let err = Profile::from_yaml(
            "name: x\nstages:\n  - duration: 10s\n    rate: -1\nrequests:\n  - path: /\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("stages[0].rate") && err.contains("line 4"),
            "{err}"
        );
        let yaml = "name: x\n# comment\nstages:\n  - {duration: 10s, rate: 5}\n  - {duration: 0s, rate: 5}\nrequests:\n  - path: /\n    weight: 1\n  - path: nope\n";
        let err = Profile::from_yaml(yaml).unwrap_err().to_string();
        assert!(
            err.contains("stages[1].duration") && err.contains("line 5"),
            "{err}"
        );
        let fixed = yaml.replace("0s", "1s");
        let err = Profile::from_yaml(&fixed).unwrap_err().to_string();
        assert!(
            err.contains("requests[1].path") && err.contains("line 9"),
            "{err}"
        );
    }

    #[test]
    fn scaling() {
        let p = Profile::builtin("demo").unwrap();
        assert_eq!(p.scale_time(0.1).duration(), Duration::from_secs(9));
        assert_eq!(p.scale_rate(2.0).peak_rate(), 100.0);
        let cut = p.with_duration(Duration::from_secs(12));
        assert_eq!(cut.duration(), Duration::from_secs(12));
        assert_eq!(cut.stages.len(), 2);
    }
}
