//! The lab's scaling report (issue 10): what the lab knows exactly (the load engine's intervals, the controller's own
//! log of every step, the pool's replica lives, the time-scaled ScalingConfig) turned into the `timeline` crate's
//! input, the SLO the analysis judges by (and where it came from), and the lab's lines around the analysis.
//! [`build_timeline`] is a pure function of recorded data, so it is tested with known inputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use autoscaler::ScalingConfig;
use load::stats::IntervalStats;
use timeline::{
    DecisionPoint, MetricType, Options, ReplicaLife, ScalingAnalysis, Settings, SignalSample, Slo,
    Timeline,
};

use crate::LabError;
use crate::keda::local_metadata;
use crate::view::DecisionRecord;

pub use contract::DEFAULT_SLO;

/// The SLO in force and where it came from (said on screen and in the summary).
#[derive(Debug, Clone, PartialEq)]
pub struct SloChoice {
    pub slo: Slo,
    pub source: String,
}

impl SloChoice {
    /// `--slo` text (or LAB_SLO), else the default. Profiles carry no thresholds and the lab takes none, so there is
    /// nothing else to derive it from. Bad text is a usage error with the `timeline` crate's field/value/allowed text.
    pub fn resolve(given: Option<&str>) -> Result<SloChoice, LabError> {
        match given {
            Some(text) => Slo::parse(text)
                .map(|slo| SloChoice {
                    slo,
                    source: "--slo".into(),
                })
                .map_err(|e| LabError::Usage(format!("--slo: {e}"))),
            None => Ok(SloChoice {
                slo: Slo::parse(DEFAULT_SLO).expect("the default SLO parses"),
                source: "the lab's default; set --slo or LAB_SLO".into(),
            }),
        }
    }

    pub fn describe(&self) -> String {
        format!("SLO {} ({})", self.slo, self.source)
    }
}

/// One replica's life as the pool recorded it, in seconds since the lab's epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaRecord {
    pub name: String,
    pub started_s: f64,
    pub ready_s: Option<f64>,
    pub stopped_s: Option<f64>,
}

/// What one run recorded. Decision and replica times are seconds since the lab's epoch (the control loop's start);
/// the intervals' are seconds since the load started, `load_start_s` after the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub intervals: &'a [IntervalStats],
    pub decisions: &'a [DecisionRecord],
    pub replicas: &'a [ReplicaRecord],
    pub load_start_s: f64,
    /// Seconds since the load started; `None` while the load goes on.
    pub load_end_s: Option<f64>,
    pub config: &'a ScalingConfig,
}

/// The `timeline` crate's input from what the lab recorded. All times become seconds since the load started; a
/// controller step just before the load (the loop starts first) counts as at 0.
pub fn build_timeline(r: &Recorded<'_>) -> Timeline {
    let at = |lab_s: f64| (lab_s - r.load_start_s).max(0.0);
    let samples = load::report::scaling_input::samples(r.intervals);
    let mut signals = Vec::new();
    let mut decisions = Vec::new();
    for d in r.decisions {
        for m in &d.metrics {
            let Some(value) = m.value else { continue };
            let metric_type = match m.metric_type.as_str() {
                "Value" => MetricType::Value,
                _ => MetricType::AverageValue,
            };
            signals.push(SignalSample {
                t_s: at(d.t_s),
                trigger: m.name.clone(),
                value,
                target: m.target,
                metric_type,
                // The scaler does not say how old its value is; the lab reads it at the step.
                age_s: None,
            });
        }
        if d.desired != d.current {
            decisions.push(DecisionPoint {
                t_s: at(d.t_s),
                from: d.current,
                to: d.desired,
                trigger: d.winner.clone(),
                reason: d.reason.clone(),
            });
        }
    }
    let replicas = r
        .replicas
        .iter()
        .map(|life| ReplicaLife {
            name: life.name.clone(),
            started_s: Some(at(life.started_s)),
            ready_s: life.ready_s.map(at),
            // The end of the first interval it answered in: when the load is known to have reached it.
            first_served_s: r
                .intervals
                .iter()
                .find(|i| i.served_by.contains_key(&life.name))
                .map(|i| i.end_s),
            stopped_s: life.stopped_s.map(at),
        })
        .collect();
    Timeline {
        samples,
        signals,
        decisions,
        replicas,
        load_end_s: r.load_end_s,
        settings: settings(r.config),
    }
}

/// The settings that govern the phases, from the (already time-scaled) config; each trigger's window as the scaler
/// is given it (time-scaled like every other duration in its metadata).
pub fn settings(config: &ScalingConfig) -> Settings {
    let mut trigger_windows = BTreeMap::new();
    for trigger in &config.triggers {
        let metadata = local_metadata(trigger, "", None, config.time_scale);
        if let Some(window) = metadata.get("window").and_then(|w| parse_seconds(w)) {
            trigger_windows.insert(trigger.name.clone(), window);
        }
    }
    Settings {
        trigger_windows,
        polling_interval_s: Some(config.polling_interval.as_secs_f64()),
        scale_up_stabilization_s: Some(config.scale_up.stabilization_window.as_secs_f64()),
        scale_up_policy_periods_s: config
            .scale_up
            .policies
            .iter()
            .map(|p| p.period.as_secs_f64())
            .collect(),
        scale_down_stabilization_s: Some(config.scale_down.stabilization_window.as_secs_f64()),
        cooldown_s: Some(config.cooldown_period.as_secs_f64()),
        tolerance: Some(config.scale_up.tolerance),
        min_replicas: Some(config.hpa_min_replicas()),
    }
}

/// A metadata duration: bare seconds or humantime (`30s`, `1m`).
fn parse_seconds(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().or_else(|| {
        humantime::parse_duration(text)
            .ok()
            .map(|d| d.as_secs_f64())
    })
}

/// The analysis options with the hold and hurt windows time-scaled like every other duration.
pub fn options(time_scale: f64) -> Options {
    let defaults = Options::default();
    Options {
        recovery_hold_s: defaults.recovery_hold_s * time_scale,
        hurt_window_s: defaults.hurt_window_s * time_scale,
        ..defaults
    }
}

/// The lab's lines after the generator's event tables: which SLO judged them and where the decisions came from, the
/// scale-down steps from the load end, and the replica-seconds wasted.
pub fn render_lab_section(analysis: &ScalingAnalysis, slo: &SloChoice, no_spawn: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nscaling report ({} event(s)): judged by the {}; decisions from the controller's log{}",
        analysis.events.len(),
        slo.describe(),
        if no_spawn {
            " (--no-spawn: simulated, not applied; readiness not observed)"
        } else {
            ""
        }
    );
    if analysis.scale_downs.is_empty() {
        s.push_str("  scale-down: no step down\n");
    }
    for step in &analysis.scale_downs {
        let after = step
            .after_load_end_s
            .map_or("before the load end".into(), |a| {
                format!("{a:.1} s after the load end")
            });
        let _ = writeln!(
            s,
            "  scale-down {} -> {} at {:.1} s, {after}",
            step.from, step.to, step.t_s
        );
    }
    let c = &analysis.cost;
    let mut cost = format!("  cost: {:.1} replica-seconds", c.replica_seconds);
    if let Some(per) = c.replica_seconds_per_1000_requests {
        let _ = write!(cost, " ({per:.2} per 1000 requests)");
    }
    match c.wasted_replica_seconds {
        Some(w) => {
            let _ = write!(cost, ", {w:.1} wasted above what the load needed");
            if let Some(after) = c.wasted_after_load_end {
                let _ = write!(cost, " ({after:.1} after the load end");
                if let Some(before) = c.wasted_before_first_step_down {
                    let _ = write!(cost, ", {before:.1} before the first step down");
                }
                cost.push(')');
            }
        }
        None => cost.push_str(", waste unknown (no capacity observed)"),
    }
    if let Some(cap) = &analysis.capacity {
        let _ = write!(
            cost,
            "; capacity {:.1} req/s per replica ({})",
            cap.per_replica_rate, cap.source
        );
    }
    s.push_str(&cost);
    s.push('\n');
    s
}

/// The pool's replica lives in seconds since the lab's epoch.
pub fn replica_records(
    lives: &[crate::replicas::Life],
    epoch: std::time::Instant,
) -> Vec<ReplicaRecord> {
    let since = |t: std::time::Instant| t.saturating_duration_since(epoch).as_secs_f64();
    lives
        .iter()
        .map(|l| ReplicaRecord {
            name: l.name.clone(),
            started_s: since(l.started),
            ready_s: l.ready.map(since),
            stopped_s: l.stopped.map(since),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MetricRecord;
    use load::monitor::ReplicaSnapshot;

    const SCALEDOBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: consumer}
spec:
  scaleTargetRef: {name: consumer}
  pollingInterval: 4
  cooldownPeriod: 60
  minReplicaCount: 1
  maxReplicaCount: 4
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 2
          policies: [{type: Pods, value: 2, periodSeconds: 10}]
        scaleDown:
          stabilizationWindowSeconds: 20
          policies: [{type: Percent, value: 50, periodSeconds: 30}]
  triggers:
    - type: external-push
      name: request-rate
      metricType: AverageValue
      metadata: {scalerAddress: "a:1", trigger: request_rate, window: 1m, target: "10"}
    - type: external-push
      name: latency-p95
      metricType: Value
      metadata: {scalerAddress: "a:1", trigger: latency, target: "0.5"}
"#;

    fn config() -> ScalingConfig {
        ScalingConfig::from_yaml(SCALEDOBJECT)
            .unwrap()
            .time_scaled(0.5)
            .unwrap()
    }

    fn interval(
        i: u64,
        served: &[&str],
        (desired, current, ready): (u32, u32, u32),
    ) -> IntervalStats {
        IntervalStats {
            index: i,
            start_s: i as f64,
            end_s: i as f64 + 1.0,
            target_rate: 20.0,
            completed: 20,
            achieved_rate: 20.0,
            served_by: served.iter().map(|n| (n.to_string(), 10)).collect(),
            replicas: Some(ReplicaSnapshot {
                desired: Some(desired),
                current: Some(current),
                ready: Some(ready),
                detail: None,
                source: "lab".into(),
            }),
            ..IntervalStats::default()
        }
    }

    fn step(t_s: f64, current: u32, desired: u32, rate: Option<f64>) -> DecisionRecord {
        DecisionRecord {
            t_s,
            current,
            ready: current,
            desired,
            active: true,
            winner: (desired != current).then(|| "request-rate".to_string()),
            raw: Some(desired),
            reason: format!("scale {current} -> {desired}"),
            metrics: vec![
                MetricRecord {
                    name: "request-rate".into(),
                    metric_type: "AverageValue".into(),
                    value: rate,
                    target: 10.0,
                    active: true,
                    proposal: Some(desired),
                    status: "ok".into(),
                },
                MetricRecord {
                    name: "latency-p95".into(),
                    metric_type: "Value".into(),
                    value: Some(0.8),
                    target: 0.5,
                    active: true,
                    proposal: Some(2),
                    status: "ok".into(),
                },
            ],
        }
    }

    #[test]
    fn the_timeline_holds_what_the_lab_recorded_on_the_load_clock() {
        let config = config();
        let intervals = vec![
            interval(0, &["consumer-1"], (1, 1, 1)),
            interval(1, &["consumer-1"], (3, 3, 1)),
            interval(2, &["consumer-1", "consumer-2"], (3, 3, 3)),
            interval(3, &["consumer-1", "consumer-2", "consumer-3"], (3, 3, 3)),
        ];
        // The control loop started 0.25 s before the load: its first step is clamped to the load's start.
        let decisions = vec![
            step(0.1, 1, 1, Some(5.0)),
            step(2.25, 1, 3, Some(25.0)),
            step(4.25, 3, 3, None),
        ];
        let replicas = vec![
            ReplicaRecord {
                name: "consumer-1".into(),
                started_s: 0.0,
                ready_s: Some(0.1),
                stopped_s: None,
            },
            ReplicaRecord {
                name: "consumer-2".into(),
                started_s: 2.3,
                ready_s: Some(2.95),
                stopped_s: Some(9.25),
            },
            ReplicaRecord {
                name: "consumer-3".into(),
                started_s: 2.3,
                ready_s: Some(3.5),
                stopped_s: None,
            },
            // Never answered: no first-served time.
            ReplicaRecord {
                name: "consumer-4".into(),
                started_s: 5.0,
                ready_s: None,
                stopped_s: None,
            },
        ];
        let tl = build_timeline(&Recorded {
            intervals: &intervals,
            decisions: &decisions,
            replicas: &replicas,
            load_start_s: 0.25,
            load_end_s: Some(3.5),
            config: &config,
        });

        assert_eq!(tl.samples.len(), 4);
        assert_eq!(
            (
                tl.samples[1].desired,
                tl.samples[1].current,
                tl.samples[1].ready
            ),
            (Some(3), Some(3), Some(1))
        );
        assert_eq!(tl.samples[2].served_by, vec!["consumer-1", "consumer-2"]);
        assert_eq!(tl.load_end_s, Some(3.5));

        // One decision: the only step that changed the count, on the load's clock.
        assert_eq!(tl.decisions.len(), 1);
        let d = &tl.decisions[0];
        assert_eq!((d.t_s, d.from, d.to), (2.0, 1, 3));
        assert_eq!(d.trigger.as_deref(), Some("request-rate"));
        assert_eq!(d.reason, "scale 1 -> 3");

        // Every reading with a value: 2 + 2 + 1 (the failed request-rate reading is left out).
        assert_eq!(tl.signals.len(), 5);
        assert_eq!(tl.signals[0].t_s, 0.0);
        let rate = &tl.signals[2];
        assert_eq!(
            (rate.t_s, rate.trigger.as_str(), rate.value, rate.target),
            (2.0, "request-rate", 25.0, 10.0)
        );
        assert_eq!(rate.metric_type, MetricType::AverageValue);
        assert_eq!(tl.signals[3].metric_type, MetricType::Value);
        assert!(tl.signals.iter().all(|s| s.age_s.is_none()));
        assert_eq!(tl.signals[4].trigger, "latency-p95");

        let life = |name: &str| tl.replicas.iter().find(|r| r.name == name).unwrap();
        let c2 = life("consumer-2");
        assert_eq!(c2.started_s, Some(2.3 - 0.25));
        assert_eq!(c2.ready_s, Some(2.95 - 0.25));
        assert_eq!(c2.first_served_s, Some(3.0));
        assert_eq!(c2.stopped_s, Some(9.0));
        assert_eq!(life("consumer-3").first_served_s, Some(4.0));
        assert_eq!(life("consumer-1").first_served_s, Some(1.0));
        let c4 = life("consumer-4");
        assert_eq!((c4.ready_s, c4.first_served_s), (None, None));

        // The settings, time-scaled by 0.5; the 1m window as the scaler gets it (30 s); no window for latency-p95.
        let s = &tl.settings;
        assert_eq!(s.polling_interval_s, Some(2.0));
        assert_eq!(s.scale_up_stabilization_s, Some(1.0));
        assert_eq!(s.scale_up_policy_periods_s, vec![5.0]);
        assert_eq!(s.scale_down_stabilization_s, Some(10.0));
        assert_eq!(s.cooldown_s, Some(30.0));
        assert_eq!(s.tolerance, Some(0.1));
        assert_eq!(s.min_replicas, Some(1));
        assert_eq!(
            s.trigger_windows,
            BTreeMap::from([("request-rate".to_string(), 30.0)])
        );
    }

    #[test]
    fn the_recorded_run_analyses_into_one_scale_up_with_its_phases() {
        let config = config();
        // p95 breaks the 500 ms SLO in [1, 3) on one replica, holds again from 3 s on three.
        let mut intervals: Vec<IntervalStats> = (0..10)
            .map(|i| {
                let counts = match i {
                    0 | 1 => (1, 1, 1),
                    2 => (3, 3, 1),
                    _ => (3, 3, 3),
                };
                let served: &[&str] = match i {
                    0..=2 => &["consumer-1"],
                    _ => &["consumer-1", "consumer-2", "consumer-3"],
                };
                interval(i, served, counts)
            })
            .collect();
        for (i, interval) in intervals.iter_mut().enumerate() {
            interval.latency.p95_ms = if (1..3).contains(&i) { 800.0 } else { 200.0 };
        }
        let decisions = vec![
            step(0.0, 1, 1, Some(5.0)),
            step(1.0, 1, 1, Some(9.0)),
            step(2.0, 1, 3, Some(25.0)),
            step(3.0, 3, 3, Some(8.0)),
        ];
        let replicas = vec![
            ReplicaRecord {
                name: "consumer-2".into(),
                started_s: 2.0,
                ready_s: Some(2.5),
                stopped_s: None,
            },
            ReplicaRecord {
                name: "consumer-3".into(),
                started_s: 2.0,
                ready_s: Some(2.75),
                stopped_s: None,
            },
        ];
        let tl = build_timeline(&Recorded {
            intervals: &intervals,
            decisions: &decisions,
            replicas: &replicas,
            load_start_s: 0.0,
            load_end_s: Some(10.0),
            config: &config,
        });
        let slo = SloChoice::resolve(None).unwrap();
        let analysis = timeline::analyse(&tl, Some(&slo.slo), &options(0.5));
        assert_eq!(analysis.events.len(), 1, "{analysis:#?}");
        let e = &analysis.events[0];
        assert_eq!((e.from_replicas, e.to_replicas), (Some(1), Some(3)));
        let at: Vec<Option<f64>> = e.phases.iter().map(|p| p.at_s).collect();
        // demand 1 (first breaking interval), signal 2 (25/10 crosses; 9/10 does not), decision 2, ready 2.75,
        // serving 4 (end of the first interval both answered in), recovered 3 (first good interval): reached 4.
        assert_eq!(
            at,
            vec![
                Some(1.0),
                Some(2.0),
                Some(2.0),
                Some(2.75),
                Some(4.0),
                Some(3.0)
            ]
        );
        assert_eq!(e.total_s, Some(3.0));
        let sum: f64 = e.phases.iter().filter_map(|p| p.duration_s).sum();
        assert!((sum - 3.0).abs() < 1e-9);
        assert_eq!(e.under_provisioned_s, 2.0);
    }

    #[test]
    fn the_slo_comes_from_the_flag_or_the_stated_default() {
        let given = SloChoice::resolve(Some("p99 < 1s")).unwrap();
        assert_eq!(given.describe(), "SLO p99<1000ms (--slo)");
        let default = SloChoice::resolve(None).unwrap();
        assert_eq!(default.slo.to_string(), DEFAULT_SLO);
        assert!(default.source.contains("default"));
        let bad = SloChoice::resolve(Some("p95<=500ms")).unwrap_err();
        assert_eq!(bad.exit_code(), contract::exit::USAGE);
        let text = bad.to_string();
        assert!(text.starts_with("--slo: slo.p95"), "{text}");
        assert!(text.contains("allowed"), "{text}");
    }

    #[test]
    fn the_hold_and_hurt_windows_follow_the_time_scale() {
        let o = options(0.25);
        assert_eq!((o.recovery_hold_s, o.hurt_window_s), (1.25, 7.5));
        assert_eq!(o.capacity_per_replica, None);
    }
}
