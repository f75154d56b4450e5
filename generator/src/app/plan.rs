//! A `run` command line turned into a plan: the profile and arrival mode, thresholds, targets, headers, connection
//! recycling and the engine's options. Pure (no network): every usage error is found here, before anything is sent.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::cli::{RateArg, RunArgs};
use crate::client::RecyclePolicy;
use crate::engine::RunOptions;
use crate::model::{ArrivalMode, Split};
use crate::profile::{Profile, RequestSpec};
use crate::targets::TargetSet;
use crate::threshold::Threshold;
use load::error::AppError;

/// What a `run` will do.
#[derive(Debug)]
pub struct RunPlan {
    pub profile: Profile,
    pub mode: ArrivalMode,
    pub thresholds: Vec<Threshold>,
    pub targets: TargetSet,
    /// Extra headers on every request (`--header`, `--load-token`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The engine's options; the caller adds tracing and metrics.
    pub options: RunOptions,
    /// How long to wait for every target's readiness path (zero: do not wait).
    pub wait_ready: Duration,
    /// Cluster faults (the profile's and `--chaos`, time-scaled), in time order.
    pub chaos: Vec<chaos_spec::ChaosSpec>,
    /// The chaos thresholds (`--chaos-threshold`, else the profile's `chaos_thresholds`), time-scaled.
    pub chaos_thresholds: Vec<crate::chaos::Threshold>,
}

impl RunPlan {
    /// Check and resolve the command line.
    pub fn from_args(args: &RunArgs) -> Result<RunPlan, AppError> {
        let (profile, mode) = build_profile(args).map_err(AppError::Usage)?;
        let thresholds = args
            .thresholds
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Threshold::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::usage)?;
        let slo = match args.slo.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(text) => Some(timeline::Slo::parse(text).map_err(AppError::usage)?),
            None => slo_from_thresholds(&thresholds),
        };
        let targets = TargetSet::new(&args.url).map_err(AppError::usage)?;
        let chaos = crate::chaos::cluster_faults(&profile.chaos)
            .map_err(|e| AppError::Usage(format!("chaos: {e}")))?;
        // The flag wins over the profile's `chaos_thresholds`; errors name where the text came from.
        let chaos_thresholds = match (&args.chaos_threshold, &profile.chaos_thresholds) {
            (Some(text), _) => Some(("--chaos-threshold", text.as_str())),
            (None, Some(text)) => Some(("the profile's chaos_thresholds", text.as_str())),
            (None, None) => None,
        };
        let chaos_thresholds = match chaos_thresholds {
            Some((source, text)) => {
                let parsed = crate::chaos::Threshold::parse_list(text, args.time_scale)
                    .map_err(|e| AppError::Usage(format!("{source}: {e}")))?;
                if chaos.is_empty() {
                    return Err(AppError::Usage(format!(
                        "{source}: the run has no faults (give --chaos or a profile with a chaos: list)"
                    )));
                }
                parsed
            }
            None => Vec::new(),
        };
        if args.pods == 0 || args.pod_index >= args.pods {
            return Err(AppError::Usage(format!(
                "--pod-index {} must be below --pods {}",
                args.pod_index, args.pods
            )));
        }
        let mut headers = args
            .headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::Usage)?;
        if let Some(token) = &args.load_token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                AppError::usage("--load-token has characters not allowed in a header")
            })?;
            headers.push((http::header::AUTHORIZATION, value));
        }
        let is_profile = args.rate.is_none();
        let recycle = recycle_policy(args, is_profile && profile.recycle_connections);
        let max_in_flight = args
            .max_in_flight
            .or(match mode {
                ArrivalMode::Open => args.connections,
                ArrivalMode::ClosedLoop { connections } => Some(connections),
            })
            .unwrap_or(1000);
        if max_in_flight == 0 {
            return Err(AppError::usage(
                "--max-in-flight / --connections must be >= 1",
            ));
        }
        let wait_ready = args.wait_ready.unwrap_or(if is_profile {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        });
        let options = RunOptions {
            mode,
            max_in_flight,
            timeout: args.timeout,
            interval: args.interval,
            drain_timeout: args.drain_timeout,
            recycle,
            split: Split {
                index: args.pod_index,
                count: args.pods,
            },
            headers: headers.clone(),
            tracing: None,
            monitor_interval: args.monitor_opts.monitor_interval,
            // The scale-down it waits for is time-scaled with the profile (the overlay scales the ScaledObject's
            // windows by the same factor), so the watch is too.
            watch_after: args.monitor_opts.watch_after.mul_f64(args.time_scale),
            metrics: None,
            slo,
            rate: None,
            request_log: None,
        };
        Ok(RunPlan {
            profile,
            mode,
            thresholds,
            targets,
            headers,
            options,
            wait_ready,
            chaos,
            chaos_thresholds,
        })
    }
}

/// Connection recycling: explicit flags win (0 turns it off); profiles recycle by default so that new replicas get
/// traffic, ad-hoc runs do not.
fn recycle_policy(args: &RunArgs, recycle_default: bool) -> RecyclePolicy {
    let max_age = match args.conn_max_age {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if recycle_default => RecyclePolicy::profile_default().max_age,
        None => None,
    };
    let max_requests = match args.conn_max_requests {
        Some(0) => None,
        Some(n) => Some(n),
        None if recycle_default => RecyclePolicy::profile_default().max_requests,
        None => None,
    };
    RecyclePolicy {
        max_age,
        max_requests,
    }
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} must be `Name: value`"))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes())
        .map_err(|_| format!("bad header name {k:?}"))?;
    let value =
        HeaderValue::from_str(v.trim()).map_err(|_| format!("bad header value for {k:?}"))?;
    Ok((name, value))
}

/// The profile a `run` asks for, with scaling applied, and the arrival mode.
pub fn build_profile(args: &RunArgs) -> Result<(Profile, ArrivalMode), String> {
    let (mut profile, mode) = match (&args.test, &args.profile_file, args.rate) {
        (Some(name), None, None) => (
            Profile::builtin_or_err(name).map_err(|e| e.to_string())?,
            ArrivalMode::Open,
        ),
        (None, Some(path), None) => (
            Profile::from_file(path).map_err(|e| e.to_string())?,
            ArrivalMode::Open,
        ),
        (None, None, Some(rate)) => {
            let duration = args
                .duration
                .ok_or("--rate needs --duration (e.g. --duration 30s)")?;
            if duration.is_zero() {
                return Err("--duration must be > 0".into());
            }
            let body = match &args.body {
                Some(b) => Some(
                    serde_json::from_str::<serde_json::Value>(b)
                        .map_err(|e| format!("--body is not valid JSON: {e}"))?,
                ),
                None => None,
            };
            let method = args
                .method
                .clone()
                .unwrap_or_else(|| {
                    if body.is_some() {
                        "POST".into()
                    } else {
                        "GET".into()
                    }
                })
                .to_ascii_uppercase();
            let request = RequestSpec {
                name: None,
                method,
                path: args.path.clone(),
                body,
                weight: 1,
            };
            match rate {
                RateArg::PerSecond(r) => {
                    (Profile::constant(r, duration, request), ArrivalMode::Open)
                }
                RateArg::Max => (
                    Profile::constant(1.0, duration, request),
                    ArrivalMode::ClosedLoop {
                        connections: args.connections.unwrap_or(50),
                    },
                ),
            }
        }
        (None, None, None) => {
            return Err(format!(
                "say what to send: --test PROFILE ({}), --profile-file FILE, or --rate R --duration D",
                Profile::builtin_names().join(", ")
            ));
        }
        _ => return Err("--test, --profile-file and --rate exclude each other".into()),
    };
    for text in &args.chaos {
        profile
            .chaos
            .push(chaos_spec::ChaosSpec::parse_flag(text).map_err(|e| e.to_string())?);
    }
    if args.time_scale != 1.0 {
        profile = profile.scale_time(args.time_scale);
    }
    if args.rate_scale != 1.0 {
        profile = profile.scale_rate(args.rate_scale);
    }
    if let (Some(d), true) = (args.duration, args.rate.is_none()) {
        if d.is_zero() {
            return Err("--duration must be > 0".into());
        }
        profile = profile.with_duration(d);
    }
    profile.validate().map_err(|e| e.to_string())?;
    Ok((profile, mode))
}

/// The SLO the latency and error thresholds imply (`p95<500ms` and `errors<1%` become `p95<500ms,errors<1%`): upper
/// limits on the whole run (no endpoint scope) on a percentile the SLO knows. `None` when there is none.
pub(crate) fn slo_from_thresholds(thresholds: &[Threshold]) -> Option<timeline::Slo> {
    use crate::threshold::{Metric, Op};
    let clauses: Vec<String> = thresholds
        .iter()
        .filter(|t| t.endpoint.is_none() && matches!(t.op, Op::Lt | Op::Le) && t.value > 0.0)
        .filter_map(|t| match &t.metric {
            Metric::Latency(p) if matches!(p.as_str(), "p50" | "p90" | "p95" | "p99" | "p99.9") => {
                Some((p.clone(), format!("{p}<{}ms", t.value)))
            }
            Metric::Errors { percent: true } if t.value <= 1.0 => {
                Some(("errors".into(), format!("errors<{}%", t.value * 100.0)))
            }
            _ => None,
        })
        // Each objective at most once: the first threshold naming it wins.
        .fold(Vec::<(String, String)>::new(), |mut acc, (k, c)| {
            if !acc.iter().any(|(seen, _)| *seen == k) {
                acc.push((k, c));
            }
            acc
        })
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    if clauses.is_empty() {
        return None;
    }
    timeline::Slo::parse(&clauses.join(",")).ok()
}

#[cfg(test)]
mod slo_tests {
    use super::*;

    fn parsed(list: &[&str]) -> Vec<Threshold> {
        list.iter().map(|t| Threshold::parse(t).unwrap()).collect()
    }

    #[test]
    fn thresholds_make_the_slo_when_none_is_given() {
        let slo = slo_from_thresholds(&parsed(&[
            "p95<500ms",
            "errors<1%",
            "rate>=10",
            "p99[x]<2s",
        ]))
        .expect("an SLO");
        assert_eq!(slo.to_string(), "p95<500ms,errors<1%");
        assert!(slo_from_thresholds(&parsed(&["rate>=10", "p95>1ms", "max<1s"])).is_none());
        let first_wins = slo_from_thresholds(&parsed(&["p95<2s", "p95<1s"])).unwrap();
        assert_eq!(first_wins.to_string(), "p95<2000ms");
    }
}
