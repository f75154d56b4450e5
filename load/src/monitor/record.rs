//! What a replica source saw besides replica counts, kept for the scaling analysis (docs/scaling-report.md): the
//! autoscaler's decisions with their reasons (Kubernetes Events, HPA `lastScaleTime`), the scaled pods' lives (Ready
//! condition transitions), trigger readings (the scaler's `/explain`), the governing settings, and which of these
//! inputs could not be read and why. Times are Unix seconds (the cluster's clock); the report converts them to
//! seconds since the load started.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A scale decision the autoscaler announced (a `SuccessfulRescale` Event): when, to how many, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDecision {
    pub at_unix: f64,
    pub to: u32,
    pub reason: String,
}

/// One pod of the scaled Deployment; its name is what the consumer answers in `x-served-by`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodLife {
    pub created_unix: Option<f64>,
    /// The Ready condition's `lastTransitionTime` while it is `True`.
    pub ready_unix: Option<f64>,
    pub deleted_unix: Option<f64>,
}

/// One trigger reading from the scaler's `/explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSignal {
    pub at_unix: f64,
    pub trigger: String,
    pub value: f64,
    pub target: f64,
    pub metric_type: timeline::MetricType,
    pub age_s: Option<f64>,
}

/// Everything recorded over a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingRecord {
    pub decisions: Vec<RecordedDecision>,
    /// Each distinct HPA `status.lastScaleTime` seen.
    pub scale_times_unix: Vec<f64>,
    pub pods: BTreeMap<String, PodLife>,
    pub signals: Vec<RecordedSignal>,
    pub settings: Option<timeline::Settings>,
    /// Where the settings came from (`ScaledObject spec`, `HPA spec.behavior`).
    pub settings_source: Option<String>,
    /// Inputs that could not be read, with the reason (the last one seen), e.g. `events` -> `403 Forbidden`.
    pub missing: BTreeMap<String, String>,
}

impl ScalingRecord {
    /// Merge another source's record (a fallback chain reports what all of its sources saw).
    pub fn merge(&mut self, other: ScalingRecord) {
        self.decisions.extend(other.decisions);
        self.scale_times_unix.extend(other.scale_times_unix);
        for (name, life) in other.pods {
            self.pods.entry(name).or_insert(life);
        }
        self.signals.extend(other.signals);
        // The same `/explain` source can reach here twice (in a fallback chain and as the signal tap).
        self.signals.sort_by(|a, b| {
            a.at_unix
                .total_cmp(&b.at_unix)
                .then(a.trigger.cmp(&b.trigger))
        });
        self.signals
            .dedup_by(|a, b| a.at_unix == b.at_unix && a.trigger == b.trigger);
        if self.settings.is_none() {
            self.settings = other.settings;
            self.settings_source = other.settings_source;
        }
        for (k, v) in other.missing {
            self.missing.entry(k).or_insert(v);
        }
    }

    /// Note an input as unreadable (or readable again).
    pub fn note(&mut self, input: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.missing.remove(input);
            }
            Err(why) => {
                self.missing.insert(input.to_string(), why);
            }
        }
    }
}

/// `New size: 3; reason: external metric s0-rate above target` -> (3, "external metric s0-rate above target").
pub fn parse_rescale_message(message: &str) -> Option<(u32, String)> {
    let rest = message.trim().strip_prefix("New size:")?;
    let (size, reason) = match rest.split_once(';') {
        Some((size, reason)) => (size, reason.trim()),
        None => (rest, ""),
    };
    let to = size.trim().parse().ok()?;
    let reason = reason.strip_prefix("reason:").unwrap_or(reason).trim();
    Some((to, reason.to_string()))
}

/// A KEDA/Go duration (`30s`, `1m`, `1m30s`, `500ms`) or plain seconds, in seconds.
pub fn parse_window(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Some(secs);
    }
    humantime::parse_duration(t).ok().map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_messages_and_windows() {
        assert_eq!(
            parse_rescale_message("New size: 3; reason: external metric s0-rate above target"),
            Some((3, "external metric s0-rate above target".into()))
        );
        assert_eq!(
            parse_rescale_message("New size: 1; reason: All metrics below target"),
            Some((1, "All metrics below target".into()))
        );
        assert_eq!(
            parse_rescale_message("New size: 2"),
            Some((2, String::new()))
        );
        assert_eq!(parse_rescale_message("scaled"), None);
        assert_eq!(parse_window("1m"), Some(60.0));
        assert_eq!(parse_window("1m30s"), Some(90.0));
        assert_eq!(parse_window("15"), Some(15.0));
        assert_eq!(parse_window("soon"), None);
    }

    #[test]
    fn missing_inputs_are_noted_and_cleared() {
        let mut r = ScalingRecord::default();
        r.note("events", Err("403 Forbidden".into()));
        assert_eq!(
            r.missing.get("events").map(String::as_str),
            Some("403 Forbidden")
        );
        r.note("events", Ok(()));
        assert!(r.missing.is_empty());
    }
}
