//! Chaos thresholds, the seed's recovery targets as expressions: `recovery<30s`, `replacement<20s`, `serving<25s`,
//! `lost<0.1%` (of the run's requests) or `lost<5` (requests), `failed<N`, `timeouts<N`, `dropped<N`; `<` or `<=`;
//! comma separated. Each is checked against every fault (the worst one decides). Durations are profile times: they
//! are multiplied by `--time-scale` like every other duration of the run.

use crate::report::{FaultReport, ThresholdResult};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Recovery,
    Replacement,
    Serving,
    Lost,
    LostPct,
    Failed,
    Timeouts,
    Dropped,
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expression: String,
    metric: Metric,
    inclusive: bool,
    /// Seconds (time-scaled), a count, or a percentage.
    limit: f64,
}

const ALLOWED: &str = "recovery|replacement|serving<DURATION (e.g. 30s), lost<N% or lost<N, failed|timeouts|dropped<N; `<` or `<=`, comma separated";

impl Threshold {
    /// Parse a comma-separated list; the error names the clause and what is allowed.
    pub fn parse_list(text: &str, time_scale: f64) -> Result<Vec<Threshold>, String> {
        let list: Vec<Threshold> = text
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| Threshold::parse(c, time_scale))
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(format!("no threshold in {text:?} (allowed: {ALLOWED})"));
        }
        Ok(list)
    }

    fn parse(clause: &str, time_scale: f64) -> Result<Threshold, String> {
        let bad = |why: &str| format!("{clause:?}: {why} (allowed: {ALLOWED})");
        let (name, inclusive, value) = if let Some((n, v)) = clause.split_once("<=") {
            (n, true, v)
        } else if let Some((n, v)) = clause.split_once('<') {
            (n, false, v)
        } else {
            return Err(bad("expected NAME<VALUE"));
        };
        let value = value.trim();
        let number = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad("the value must be a number >= 0"))
        };
        let seconds = || {
            humantime::parse_duration(value)
                .map(|d| d.as_secs_f64() * time_scale)
                .map_err(|e| bad(&format!("invalid duration ({e})")))
        };
        let (metric, limit) = match name.trim() {
            "recovery" => (Metric::Recovery, seconds()?),
            "replacement" => (Metric::Replacement, seconds()?),
            "serving" => (Metric::Serving, seconds()?),
            "lost" => match value.strip_suffix('%') {
                Some(pct) => (Metric::LostPct, number(pct)?),
                None => (Metric::Lost, number(value)?),
            },
            "failed" => (Metric::Failed, number(value)?),
            "timeouts" => (Metric::Timeouts, number(value)?),
            "dropped" => (Metric::Dropped, number(value)?),
            _ => return Err(bad("unknown name")),
        };
        Ok(Threshold {
            expression: clause.to_string(),
            metric,
            inclusive,
            limit,
        })
    }

    fn value(&self, f: &FaultReport) -> Option<f64> {
        match self.metric {
            Metric::Recovery => {
                if f.slo_hurt {
                    f.recovered_after_s
                } else {
                    Some(0.0)
                }
            }
            Metric::Replacement => f.replacement_ready_after_s,
            Metric::Serving => f.replacement_serving_after_s,
            Metric::Lost => Some(f.lost as f64),
            Metric::LostPct => Some(f.lost_pct_of_run),
            Metric::Failed => Some(f.failed as f64),
            Metric::Timeouts => Some(f.timed_out as f64),
            Metric::Dropped => Some(f.dropped as f64),
        }
    }

    /// Judge every fault that hit something; a figure that was never reached (not recovered, no replacement ready)
    /// fails.
    pub fn check(&self, faults: &[FaultReport]) -> ThresholdResult {
        let hit: Vec<&FaultReport> = faults.iter().filter(|f| f.hit.is_some()).collect();
        // The Kafka scenario's faults count messages.
        let kafka = !hit.is_empty() && hit.iter().all(|f| f.kafka.is_some());
        let unit = match self.metric {
            Metric::Recovery | Metric::Replacement | Metric::Serving => "s",
            Metric::LostPct => "%",
            Metric::Lost | Metric::Failed if kafka => "messages",
            _ => "requests",
        };
        // `30s`, `0.1%`, but `5 requests`.
        let with_unit = |v: String| {
            if unit.len() > 1 {
                format!("{v} {unit}")
            } else {
                format!("{v}{unit}")
            }
        };
        let mut worst: Option<f64> = None;
        let mut missing = Vec::new();
        for f in &hit {
            match self.value(f) {
                Some(v) => worst = Some(worst.map_or(v, |w: f64| w.max(v))),
                None => missing.push(format!("{} at {:.1}s", f.action, f.at_s)),
            }
        }
        let within = |v: f64| {
            if self.inclusive {
                v <= self.limit
            } else {
                v < self.limit
            }
        };
        let passed = !hit.is_empty() && missing.is_empty() && worst.is_none_or(within);
        let limit = with_unit(trim(self.limit));
        let message = if hit.is_empty() {
            "no fault hit anything: nothing to judge".to_string()
        } else if !missing.is_empty() {
            format!("never reached for {} (limit {limit})", missing.join(", "))
        } else {
            format!(
                "worst of {} fault(s): {} (limit {limit})",
                hit.len(),
                worst.map_or_else(|| "-".into(), |w| with_unit(trim(w)))
            )
        };
        ThresholdResult {
            expression: self.expression.clone(),
            actual: worst,
            unit: unit.to_string(),
            passed,
            message,
        }
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_clear_errors() {
        let list = Threshold::parse_list("recovery<30s, lost<0.1%,failed<=3", 0.5).unwrap();
        assert_eq!(list[0].metric, Metric::Recovery);
        assert_eq!(list[0].limit, 15.0, "time-scaled");
        assert_eq!(list[1].metric, Metric::LostPct);
        assert!(list[2].inclusive);
        for (text, wanted) in [
            ("recovery>3s", "expected NAME<VALUE"),
            ("speed<3", "unknown name"),
            ("recovery<soon", "invalid duration"),
            ("lost<-1%", "number >= 0"),
            ("", "no threshold"),
        ] {
            let e = Threshold::parse_list(text, 1.0).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }
}
