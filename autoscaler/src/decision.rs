//! What one controller step decided and why, in structured form and (through `Display`) in words a user
//! can read in the lab's live view: which metric won, with which formula, what its raw proposal was, and
//! which stabilization window, policy, bound, activation, cooldown or fallback held the result back.

use std::fmt;
use std::time::Duration;

use crate::hpa::{num, secs};
use crate::spec::{FallbackBehavior, MetricType, SelectPolicy};

/// Direction of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        })
    }
}

/// How one metric was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvaluation {
    pub name: String,
    pub metric_type: MetricType,
    pub target: f64,
    /// The value read, or the synthetic fallback value KEDA would report.
    pub value: Option<f64>,
    /// Whether this trigger reported itself active (KEDA's IsActive).
    pub active: bool,
    pub status: MetricStatus,
    /// Replicas this metric asks for; `None` when it could not be evaluated.
    pub proposal: Option<u32>,
    /// The formula with numbers (empty when not evaluated).
    pub formula: String,
}

/// The state of one metric in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricStatus {
    /// Evaluated normally.
    Ok,
    /// Ratio within tolerance: the proposal is the current count.
    WithinTolerance,
    /// The scaler failed; `failures` consecutive failures so far.
    Error { message: String, failures: u32 },
    /// Failed more than `failureThreshold` times: KEDA reports `target x fallbackReplicas` instead.
    Fallback {
        message: String,
        failures: u32,
        replicas: u32,
        behavior: FallbackBehavior,
    },
}

/// Which part of the KEDA + HPA pipeline produced the result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// KEDA: a trigger became active while at zero (or idle): scale to max(minReplicaCount, 1).
    Activated { trigger: String, from: u32 },
    /// KEDA: no trigger active at zero (or idle); the HPA is off.
    Idle,
    /// KEDA: no trigger active for cooldownPeriod: scale to zero (or idleReplicaCount).
    CooledDown { inactive_for: Duration },
    /// KEDA: replicas below minReplicaCount are raised to it.
    RaisedToMin,
    /// KEDA: at zero with a failing scaler past failureThreshold: scale to the fallback count.
    FallbackFromZero { replicas: u32 },
    /// KEDA: no trigger active but a scaler is failing: scale to zero is held until it answers again.
    HeldByScalerError,
    /// HPA: current replicas above maxReplicas: set to max without evaluating metrics.
    AboveMax,
    /// HPA: current replicas below its minReplicas: set to min without evaluating metrics.
    BelowMin,
    /// HPA: no metric could be evaluated: no change.
    NoMetrics,
    /// HPA: some metric failed and the others propose a scale-down: the HPA skips scaling down.
    ScaleDownBlockedByInvalidMetrics,
    /// HPA: the normal path (metrics -> max -> stabilization -> policies -> bounds).
    Hpa,
}

/// A constraint that held the HPA's result back from the raw proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// The stabilization window replaced the raw proposal by `to`.
    Stabilization {
        direction: Direction,
        window: Duration,
        from: u32,
        to: u32,
    },
    /// The policies allow at most (scale-up) / at least (scale-down) `limit` replicas now.
    Policy {
        direction: Direction,
        select: SelectPolicy,
        policies: String,
        limit: u32,
    },
    /// selectPolicy Disabled in this direction.
    Disabled { direction: Direction },
    /// maxReplicaCount.
    MaxReplicas { max: u32 },
    /// The HPA's minReplicas (minReplicaCount, at least 1).
    MinReplicas { min: u32 },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Stabilization {
                direction,
                window,
                from,
                to,
            } => {
                let which = if *direction == Direction::Up {
                    "lowest"
                } else {
                    "highest"
                };
                write!(
                    f,
                    "{direction} stabilization window {} holds {from} at {to} (the {which} recommendation in the window)",
                    secs(*window)
                )
            }
            Limit::Policy {
                direction,
                policies,
                limit,
                ..
            } => write!(f, "{direction} policy {policies} allows {limit} now"),
            Limit::Disabled { direction } => {
                write!(f, "{direction} is disabled (selectPolicy Disabled)")
            }
            Limit::MaxReplicas { max } => write!(f, "maxReplicaCount {max}"),
            Limit::MinReplicas { min } => write!(f, "minReplicaCount {min}"),
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Time of the step since the controller's epoch.
    pub at: Duration,
    pub current: u32,
    pub desired: u32,
    /// KEDA's view: any trigger active.
    pub active: bool,
    pub outcome: Outcome,
    pub metrics: Vec<MetricEvaluation>,
    /// The metric whose proposal was the maximum.
    pub winner: Option<String>,
    /// The HPA's raw recommendation: the maximum over metric proposals.
    pub raw: Option<u32>,
    /// After the stabilization window.
    pub stabilized: Option<u32>,
    /// What held the result back, in pipeline order.
    pub limits: Vec<Limit>,
    /// Remaining time before KEDA scales to zero / idle, when that is pending.
    pub cooldown_remaining: Option<Duration>,
}

impl Decision {
    /// The direction of the change, if any.
    pub fn direction(&self) -> Option<Direction> {
        match self.desired.cmp(&self.current) {
            std::cmp::Ordering::Greater => Some(Direction::Up),
            std::cmp::Ordering::Less => Some(Direction::Down),
            std::cmp::Ordering::Equal => None,
        }
    }

    fn winner_text(&self) -> Option<String> {
        let name = self.winner.as_ref()?;
        let metric = self.metrics.iter().find(|m| &m.name == name)?;
        let value = metric.value.map(num).unwrap_or_else(|| "?".into());
        let target = match metric.metric_type {
            MetricType::AverageValue | MetricType::Utilization => {
                format!("target {} per replica", num(metric.target))
            }
            MetricType::Value => format!("target {}", num(metric.target)),
        };
        let origin = match &metric.status {
            MetricStatus::Fallback {
                failures,
                replicas,
                behavior,
                ..
            } => format!(
                " [fallback after {failures} failures: {replicas} replicas, behavior {behavior}]"
            ),
            _ => String::new(),
        };
        Some(format!(
            "{name} = {value} ({}, {target}){origin}: {}",
            metric.metric_type, metric.formula
        ))
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let change = if self.desired == self.current {
            format!("keep {}", self.current)
        } else {
            format!("scale {} -> {}", self.current, self.desired)
        };
        write!(f, "{change}: ")?;
        match &self.outcome {
            Outcome::Activated { trigger, from } => {
                if *from == 0 {
                    write!(f, "trigger {trigger} is active, KEDA activates from zero")?
                } else {
                    write!(
                        f,
                        "trigger {trigger} is active, KEDA leaves the idle count {from}"
                    )?
                }
            }
            Outcome::Idle => write!(f, "no trigger is active; KEDA keeps the target idle")?,
            Outcome::CooledDown { inactive_for } => write!(
                f,
                "no trigger active for {} (cooldownPeriod elapsed), KEDA scales in",
                secs(*inactive_for)
            )?,
            Outcome::RaisedToMin => write!(f, "below minReplicaCount, KEDA raises it")?,
            Outcome::FallbackFromZero { replicas } => write!(
                f,
                "scaler failing past failureThreshold, fallback to {replicas} replicas"
            )?,
            Outcome::HeldByScalerError => write!(
                f,
                "no trigger active, but a scaler is failing: not scaling to zero until it answers"
            )?,
            Outcome::AboveMax => write!(f, "above maxReplicaCount, the HPA lowers it")?,
            Outcome::BelowMin => write!(f, "below the HPA's minReplicas, the HPA raises it")?,
            Outcome::NoMetrics => write!(f, "no metric could be evaluated, the HPA holds")?,
            Outcome::ScaleDownBlockedByInvalidMetrics => write!(
                f,
                "a metric failed and the others propose fewer replicas: the HPA does not scale down on partial data"
            )?,
            Outcome::Hpa => match self.winner_text() {
                Some(text) => write!(f, "{text}")?,
                None => write!(f, "no metric")?,
            },
        }
        if let (Some(raw), Outcome::Hpa) = (self.raw, &self.outcome) {
            let others: Vec<String> = self
                .metrics
                .iter()
                .filter(|m| Some(&m.name) != self.winner.as_ref())
                .map(|m| match (&m.status, m.proposal) {
                    (MetricStatus::Error { failures, .. }, _) => {
                        format!("{} failing ({failures}x)", m.name)
                    }
                    (_, Some(p)) => format!("{} -> {p}", m.name),
                    (_, None) => format!("{} -> ?", m.name),
                })
                .collect();
            if !others.is_empty() {
                write!(
                    f,
                    "; max over metrics = {raw} (others: {})",
                    others.join(", ")
                )?;
            }
        }
        for limit in &self.limits {
            write!(f, "; {limit}")?;
        }
        if let Some(remaining) = self.cooldown_remaining {
            write!(
                f,
                "; idle: scale to zero in {} unless a trigger activates",
                secs(remaining)
            )?;
        }
        Ok(())
    }
}
