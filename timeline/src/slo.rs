//! The service level objective a run is judged by, parsed from text like `p95<500ms,errors<1%`, and whether one
//! interval kept it. Bad text is refused with the project's error style: the field, the value given and what is
//! allowed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::input::{Percentiles, Sample};

/// Why an SLO text was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {value:?}: {message} (allowed: {allowed})")]
pub struct SloError {
    /// `slo` for the text as a whole, `slo.<objective>` for one clause.
    pub field: String,
    /// The text at fault.
    pub value: String,
    /// What would have been accepted.
    pub allowed: String,
    pub message: String,
}

/// A latency percentile an SLO may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Percentile {
    P50,
    P90,
    P95,
    P99,
    P99_9,
}

impl Percentile {
    const NAMES: [(&'static str, Percentile); 5] = [
        ("p50", Percentile::P50),
        ("p90", Percentile::P90),
        ("p95", Percentile::P95),
        ("p99", Percentile::P99),
        ("p99.9", Percentile::P99_9),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("?", |(n, _)| n)
    }

    /// The share of requests allowed above the limit (p95: 0.05).
    pub fn allowance(self) -> f64 {
        match self {
            Percentile::P50 => 0.5,
            Percentile::P90 => 0.1,
            Percentile::P95 => 0.05,
            Percentile::P99 => 0.01,
            Percentile::P99_9 => 0.001,
        }
    }

    pub fn of(self, p: &Percentiles) -> Option<f64> {
        match self {
            Percentile::P50 => p.p50_s,
            Percentile::P90 => p.p90_s,
            Percentile::P95 => p.p95_s,
            Percentile::P99 => p.p99_s,
            Percentile::P99_9 => p.p99_9_s,
        }
    }
}

/// `pNN < limit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyObjective {
    pub percentile: Percentile,
    pub limit_s: f64,
}

/// The objective: latency percentiles under limits and the error share under a fraction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub latency: Vec<LatencyObjective>,
    /// `errors<1%` as 0.01.
    pub max_error_share: Option<f64>,
}

const ALLOWED_CLAUSES: &str =
    "comma-separated p50|p90|p95|p99|p99.9<N(ms|s) and errors<N% (0 < N <= 100)";

impl Slo {
    pub fn parse(text: &str) -> Result<Slo, SloError> {
        let whole = |message: &str| SloError {
            field: "slo".into(),
            value: text.into(),
            allowed: ALLOWED_CLAUSES.into(),
            message: message.into(),
        };
        if text.trim().is_empty() {
            return Err(whole("the SLO is empty"));
        }
        let mut slo = Slo::default();
        for clause in text.split(',') {
            let clause = clause.trim();
            if clause.is_empty() {
                return Err(whole("an objective between commas is empty"));
            }
            let Some((name, limit)) = clause.split_once('<') else {
                return Err(whole(&format!(
                    "objective {clause:?} needs `<` (an SLO states upper limits)"
                )));
            };
            let name = name.trim().to_ascii_lowercase();
            let limit = limit.trim();
            let bad = |allowed: &str, message: String| SloError {
                field: format!("slo.{name}"),
                value: clause.into(),
                allowed: allowed.into(),
                message,
            };
            if limit.starts_with('=') {
                return Err(bad(
                    "a strict `<`",
                    "`<=` is not accepted: write the limit with `<`".into(),
                ));
            }
            let split = limit
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(limit.len());
            let (number, unit) = (&limit[..split], limit[split..].trim());
            if number.is_empty() {
                return Err(bad(
                    "a positive number",
                    format!("{limit:?} does not start with a number"),
                ));
            }
            let n: f64 = number
                .parse()
                .map_err(|_| bad("a positive number", format!("{number:?} is not a number")))?;
            if name == "errors" {
                if unit != "%" {
                    return Err(bad(
                        "a percentage like 1%",
                        "the error limit must be a percentage".into(),
                    ));
                }
                if !(n > 0.0 && n <= 100.0) {
                    return Err(bad(
                        "0 < N <= 100",
                        format!("{n}% is not a usable error limit"),
                    ));
                }
                if slo.max_error_share.is_some() {
                    return Err(bad("each objective once", "errors is given twice".into()));
                }
                slo.max_error_share = Some(n / 100.0);
                continue;
            }
            let Some(percentile) = Percentile::NAMES
                .iter()
                .find(|(p, _)| *p == name)
                .map(|(_, p)| *p)
            else {
                return Err(bad(
                    "p50, p90, p95, p99, p99.9, errors",
                    format!("unknown objective {name:?}"),
                ));
            };
            let limit_s = match unit {
                "ms" => n / 1000.0,
                "s" => n,
                _ => {
                    return Err(bad(
                        "ms or s",
                        format!("latency unit {unit:?} is not ms or s"),
                    ));
                }
            };
            if limit_s <= 0.0 {
                return Err(bad(
                    "a limit above zero",
                    "no request is faster than 0".into(),
                ));
            }
            if slo.latency.iter().any(|o| o.percentile == percentile) {
                return Err(bad("each objective once", format!("{name} is given twice")));
            }
            slo.latency.push(LatencyObjective {
                percentile,
                limit_s,
            });
        }
        Ok(slo)
    }

    /// Whether the interval broke the SLO. An interval in which nothing finished while load was offered breaks it (a
    /// stall); a percentile the sample does not carry is not judged.
    pub fn breached(&self, s: &Sample) -> bool {
        if s.requests == 0 {
            return s.offered_rate > 0.0;
        }
        let slow = self
            .latency
            .iter()
            .any(|o| o.percentile.of(&s.latency).is_some_and(|v| v >= o.limit_s));
        let failing = self
            .max_error_share
            .is_some_and(|max| s.errors() as f64 / s.requests as f64 >= max);
        slow || failing
    }

    /// The objective `Sample::over_slo` counts against: the first latency objective.
    pub fn counted_latency(&self) -> Option<LatencyObjective> {
        self.latency.first().copied()
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .latency
            .iter()
            .map(|o| format!("{}<{}ms", o.percentile.name(), trim(o.limit_s * 1000.0)))
            .collect();
        if let Some(e) = self.max_error_share {
            parts.push(format!("errors<{}%", trim(e * 100.0)));
        }
        f.write_str(&parts.join(","))
    }
}

/// A number without trailing zeros.
pub(crate) fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentiles_units_and_errors() {
        let slo = Slo::parse("p95<500ms, errors<1%,p99.9<2s,P50<20ms,p90<0.25s,p99<1s").unwrap();
        let limits: Vec<(&str, f64)> = slo
            .latency
            .iter()
            .map(|o| (o.percentile.name(), o.limit_s))
            .collect();
        assert_eq!(
            limits,
            vec![
                ("p95", 0.5),
                ("p99.9", 2.0),
                ("p50", 0.02),
                ("p90", 0.25),
                ("p99", 1.0)
            ]
        );
        assert_eq!(slo.max_error_share, Some(0.01));
        let spaced = Slo::parse(" P95 < 500 ms , Errors < 0.5 % ").unwrap();
        assert_eq!(spaced.to_string(), "p95<500ms,errors<0.5%");
        assert_eq!(
            slo.to_string(),
            "p95<500ms,p99.9<2000ms,p50<20ms,p90<250ms,p99<1000ms,errors<1%"
        );
    }

    #[test]
    fn every_bad_form_names_field_value_and_allowed() {
        // (text, field, value, a word of `allowed`)
        let cases = [
            ("", "slo", "", "comma-separated"),
            ("   ", "slo", "   ", "comma-separated"),
            ("p95<500ms,", "slo", "p95<500ms,", "comma-separated"),
            ("p95>500ms", "slo", "p95>500ms", "comma-separated"),
            ("p95=500ms", "slo", "p95=500ms", "comma-separated"),
            ("p95<=500ms", "slo.p95", "p95<=500ms", "strict"),
            ("p97<500ms", "slo.p97", "p97<500ms", "p99.9"),
            ("latency<500ms", "slo.latency", "latency<500ms", "p95"),
            ("p95<ms", "slo.p95", "p95<ms", "positive number"),
            ("p95<", "slo.p95", "p95<", "positive number"),
            ("p95<-5ms", "slo.p95", "p95<-5ms", "positive number"),
            ("p95<1.2.3ms", "slo.p95", "p95<1.2.3ms", "positive number"),
            ("p95<500", "slo.p95", "p95<500", "ms or s"),
            ("p95<500us", "slo.p95", "p95<500us", "ms or s"),
            ("p95<1m", "slo.p95", "p95<1m", "ms or s"),
            ("p95<0ms", "slo.p95", "p95<0ms", "above zero"),
            ("errors<1", "slo.errors", "errors<1", "percentage"),
            ("errors<1ms", "slo.errors", "errors<1ms", "percentage"),
            ("errors<0%", "slo.errors", "errors<0%", "0 < N <= 100"),
            ("errors<101%", "slo.errors", "errors<101%", "0 < N <= 100"),
            ("errors<1%,errors<2%", "slo.errors", "errors<2%", "once"),
            ("p95<1s,p95<2s", "slo.p95", "p95<2s", "once"),
        ];
        for (text, field, value, allowed) in cases {
            let err = Slo::parse(text).expect_err(text);
            assert_eq!(err.field, field, "{text}");
            assert_eq!(err.value, value, "{text}");
            assert!(
                err.allowed.contains(allowed),
                "{text}: {:?} lacks {allowed:?}",
                err.allowed
            );
            let shown = err.to_string();
            assert!(
                shown.contains(field) && shown.contains("allowed"),
                "{shown}"
            );
        }
    }

    #[test]
    fn breach_is_judged_per_interval() {
        let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
        let mut s = Sample {
            requests: 100,
            offered_rate: 100.0,
            ..Sample::default()
        };
        s.latency.p95_s = Some(0.499);
        assert!(!slo.breached(&s));
        s.latency.p95_s = Some(0.5);
        assert!(slo.breached(&s), "the limit itself breaks `<`");
        s.latency.p95_s = Some(0.1);
        s.errors_by_class.insert("timeout".into(), 1);
        assert!(slo.breached(&s), "1 of 100 is not under 1%");
        s.requests = 101;
        assert!(!slo.breached(&s));
        let stalled = Sample {
            offered_rate: 10.0,
            ..Sample::default()
        };
        assert!(slo.breached(&stalled));
        let idle = Sample::default();
        assert!(!slo.breached(&idle));
    }
}
