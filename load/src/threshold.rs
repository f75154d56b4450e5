//! Pass/fail thresholds on a report: `p95<500ms`, `errors<1%`, `dropped<0.1%`, `rate>=1900`, `time_to_scale<60s`,
//! optionally scoped to one endpoint: `p99[POST /load/io async]<2s`.

use crate::report::{Report, ThresholdResult};

/// Why a threshold expression did not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "threshold {expr:?}: {reason}; examples: p95<500ms, errors<1%, dropped<0.1%, rate>=100, time_to_scale<60s"
)]
pub struct ThresholdError {
    pub expr: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
    pub fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// What a threshold measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A latency percentile name (`p50`, `p95`, `p99.9`, `max`, `mean`); value in ms.
    Latency(String),
    /// Error share (with `%`) or count.
    Errors {
        percent: bool,
    },
    /// Dropped share (of scheduled) or count.
    Dropped {
        percent: bool,
    },
    /// Achieved rate, req/s.
    Rate,
    /// Finished requests.
    Requests,
    /// Scaling times in seconds.
    TimeToScale,
    TimeToReady,
    TimeToScaleDown,
    PeakReplicas,
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub expr: String,
    pub metric: Metric,
    pub endpoint: Option<String>,
    pub op: Op,
    /// In the metric's base unit: ms for latency, fraction for percentages, seconds for times.
    pub value: f64,
}

fn split_number_unit(s: &str) -> (&str, &str) {
    let idx = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(s.len());
    // `e` may start a unit too (none of ours does), so numbers like 1e3 parse.
    (&s[..idx], s[idx..].trim())
}

impl Threshold {
    pub fn parse(expr: &str) -> Result<Threshold, ThresholdError> {
        let bad = |reason: &str| ThresholdError {
            expr: expr.to_string(),
            reason: reason.to_string(),
        };
        let e = expr.trim();
        let (pos, op, len) = ["<=", ">=", "<", ">"]
            .iter()
            .find_map(|o| e.find(o).map(|p| (p, *o, o.len())))
            .ok_or_else(|| bad("needs one of < <= > >="))?;
        let op = match op {
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            _ => Op::Gt,
        };
        let lhs = e[..pos].trim();
        let rhs = e[pos + len..].trim();
        let (name, endpoint) = match lhs.find('[') {
            Some(i) if lhs.ends_with(']') => (
                lhs[..i].trim(),
                Some(lhs[i + 1..lhs.len() - 1].trim().to_string()),
            ),
            Some(_) => return Err(bad("endpoint scope must be written metric[endpoint name]")),
            None => (lhs, None),
        };
        let name = name.to_ascii_lowercase();
        let (num, unit) = split_number_unit(rhs);
        let n: f64 = num
            .parse()
            .map_err(|_| bad("the right-hand side must be a number"))?;
        if !n.is_finite() || n < 0.0 {
            return Err(bad("the value must be a finite number >= 0"));
        }
        let time_to_secs = |unit: &str| -> Result<f64, ThresholdError> {
            Ok(match unit {
                "" | "s" => n,
                "ms" => n / 1000.0,
                "m" | "min" => n * 60.0,
                _ => return Err(bad("time unit must be ms, s or m")),
            })
        };
        let (metric, value) = match name.as_str() {
            "p50" | "median" | "p90" | "p95" | "p99" | "p99.9" | "p999" | "max" | "mean"
            | "avg" => {
                let ms = match unit {
                    "" | "ms" => n,
                    "s" => n * 1000.0,
                    "us" | "µs" => n / 1000.0,
                    _ => return Err(bad("latency unit must be us, ms or s")),
                };
                (Metric::Latency(name.clone()), ms)
            }
            "errors" | "error_rate" | "dropped" => {
                let percent = match unit {
                    "%" => true,
                    "" => name == "error_rate",
                    _ => return Err(bad("use a count or a percentage like 1%")),
                };
                let v = if unit == "%" { n / 100.0 } else { n };
                if name == "dropped" {
                    (Metric::Dropped { percent }, v)
                } else {
                    (Metric::Errors { percent }, v)
                }
            }
            "rate" | "achieved_rate" | "rps" => {
                if !matches!(unit, "" | "/s" | "rps") {
                    return Err(bad("rate unit is req/s: write a plain number"));
                }
                (Metric::Rate, n)
            }
            "requests" => (Metric::Requests, n),
            "time_to_scale" => (Metric::TimeToScale, time_to_secs(unit)?),
            "time_to_ready" => (Metric::TimeToReady, time_to_secs(unit)?),
            "time_to_scale_down" => (Metric::TimeToScaleDown, time_to_secs(unit)?),
            "peak_replicas" => (Metric::PeakReplicas, n),
            _ => {
                return Err(bad(
                    "unknown metric; known: p50 p90 p95 p99 p99.9 max mean errors dropped rate requests \
                     time_to_scale time_to_ready time_to_scale_down peak_replicas",
                ));
            }
        };
        if endpoint.is_some()
            && !matches!(
                metric,
                Metric::Latency(_)
                    | Metric::Errors { .. }
                    | Metric::Dropped { .. }
                    | Metric::Rate
                    | Metric::Requests
            )
        {
            return Err(bad(
                "only latency, errors, dropped, rate and requests can be scoped to an endpoint",
            ));
        }
        Ok(Threshold {
            expr: e.to_string(),
            metric,
            endpoint,
            op,
            value,
        })
    }

    /// Evaluate against a report.
    pub fn evaluate(&self, r: &Report) -> ThresholdResult {
        let summary = match &self.endpoint {
            None => Some(crate::stats::EndpointSummary {
                requests: r.requests,
                ok: r.ok,
                achieved_rate: r.achieved_rate,
                errors: r.errors.clone(),
                dropped: r.dropped,
                latency: r.latency.clone(),
            }),
            Some(name) => r.endpoints.get(name).cloned(),
        };
        let scaling = r.scaling.as_ref();
        let (actual, unit): (Option<f64>, &str) = match (&self.metric, &summary) {
            (_, None) => (None, ""),
            (Metric::Latency(p), Some(s)) => (s.latency.get(p), "ms"),
            (Metric::Errors { percent: true }, Some(s)) => (
                Some(if s.requests == 0 {
                    0.0
                } else {
                    s.errors.total as f64 / s.requests as f64
                }),
                "fraction",
            ),
            (Metric::Errors { percent: false }, Some(s)) => {
                (Some(s.errors.total as f64), "requests")
            }
            (Metric::Dropped { percent: true }, Some(s)) => {
                let all = s.requests + s.dropped;
                (
                    Some(if all == 0 {
                        0.0
                    } else {
                        s.dropped as f64 / all as f64
                    }),
                    "fraction",
                )
            }
            (Metric::Dropped { percent: false }, Some(s)) => (Some(s.dropped as f64), "requests"),
            (Metric::Rate, Some(s)) => (Some(s.achieved_rate), "req/s"),
            (Metric::Requests, Some(s)) => (Some(s.requests as f64), "requests"),
            (Metric::TimeToScale, _) => (scaling.and_then(|s| s.time_to_scale_s), "s"),
            (Metric::TimeToReady, _) => (scaling.and_then(|s| s.time_to_first_new_ready_s), "s"),
            (Metric::TimeToScaleDown, _) => (scaling.and_then(|s| s.time_to_scale_down_s), "s"),
            (Metric::PeakReplicas, _) => (
                scaling.and_then(|s| s.peak_replicas).map(f64::from),
                "replicas",
            ),
        };
        let shown = |v: f64| match unit {
            "ms" => crate::stats::fmt_ms(v),
            "fraction" => format!("{:.3}%", v * 100.0),
            "s" => format!("{v:.1}s"),
            _ => format!("{v:.2}"),
        };
        match actual {
            Some(a) => {
                let passed = self.op.holds(a, self.value);
                ThresholdResult {
                    expression: self.expr.clone(),
                    actual: Some(a),
                    unit: unit.to_string(),
                    passed,
                    message: format!(
                        "actual {} {} {}",
                        shown(a),
                        if passed { self.op.text() } else { "breaks" },
                        shown(self.value)
                    ),
                }
            }
            None => ThresholdResult {
                expression: self.expr.clone(),
                actual: None,
                unit: unit.to_string(),
                passed: false,
                message: match (&self.endpoint, &summary) {
                    (Some(ep), None) => format!(
                        "no endpoint named {ep:?}; endpoints: {}",
                        r.endpoints.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    _ if scaling.is_none() => "not measured: needs --monitor".to_string(),
                    _ => "not observed during the run".to_string(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let t = Threshold::parse("p95<500ms").unwrap();
        assert_eq!(
            (t.metric.clone(), t.op, t.value),
            (Metric::Latency("p95".into()), Op::Lt, 500.0)
        );
        assert_eq!(Threshold::parse("p99 <= 2s").unwrap().value, 2000.0);
        let t = Threshold::parse("errors<1%").unwrap();
        assert_eq!(
            (t.metric, t.value),
            (Metric::Errors { percent: true }, 0.01)
        );
        assert_eq!(Threshold::parse("dropped<0.1%").unwrap().value, 0.001);
        assert_eq!(Threshold::parse("time_to_scale<1m").unwrap().value, 60.0);
        assert_eq!(Threshold::parse("rate>=1900").unwrap().op, Op::Ge);
        let t = Threshold::parse("p99[POST /load/io async]<2s").unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("POST /load/io async"));
        for bad in [
            "p95",
            "p95<fast",
            "p42<1ms",
            "errors<1kg",
            "time_to_scale[x]<1s",
            "p95<-1ms",
        ] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }
}
