//! The KEDA + HPA replica controller: each [`Controller::step`] takes the triggers' readings and the
//! current replica count at an explicit time and returns a [`Decision`]. KEDA's part (activation 0 <-> 1,
//! cooldownPeriod, idleReplicaCount, minReplicaCount, fallback) wraps the HPA's part (formula, tolerance,
//! max over metrics, stabilization, policies, min/max), as on a cluster where KEDA owns the HPA.

use std::time::Duration;

use crate::config::ScalingConfig;
use crate::decision::{Decision, Direction, Limit, MetricEvaluation, MetricStatus, Outcome};
use crate::hpa::{self, Stamped, describe_policies};
use crate::spec::{FallbackBehavior, MetricType, SelectPolicy};

/// A successful reading of one trigger's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub value: f64,
    /// KEDA's IsActive for this trigger.
    pub active: bool,
}

impl Reading {
    /// A reading whose activity follows KEDA's rule for built-in scalers: active when the value is
    /// greater than `activationTarget` (KEDA "Scaling Deployments": activation phase).
    pub fn with_activation(value: f64, activation_target: f64) -> Reading {
        Reading {
            value,
            active: value > activation_target,
        }
    }
}

/// One trigger's observation for a step: its metric spec (as GetMetricSpec reports it) and either a
/// reading or the scaler's error.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The trigger's name as in [`crate::TriggerConfig::name`].
    pub trigger: String,
    pub metric_type: MetricType,
    /// Target value: per replica for AverageValue, total for Value.
    pub target: f64,
    pub reading: Result<Reading, String>,
}

/// Input of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInput {
    /// Time since the controller's epoch (the ScaledObject's creation).
    pub now: Duration,
    /// The Deployment's replica count (spec).
    pub current_replicas: u32,
    /// Replicas that pass readiness (used by the HPA's Value formula).
    pub ready_replicas: u32,
    pub observations: Vec<Observation>,
}

/// The controller's memory between steps.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ScalingConfig,
    /// The HPA's raw recommendations, for stabilization.
    recommendations: Vec<Stamped>,
    scale_up_events: Vec<Stamped>,
    scale_down_events: Vec<Stamped>,
    /// KEDA's status.lastActiveTime.
    last_active: Option<Duration>,
    /// Consecutive failures per trigger (KEDA's status.health[].numberOfFailures), indexed like the config.
    failures: Vec<u32>,
    last_step: Option<Duration>,
}

impl Controller {
    /// A controller for `config`, whose ScaledObject was created at time zero.
    pub fn new(config: ScalingConfig) -> Controller {
        let failures = vec![0; config.triggers.len()];
        Controller {
            config,
            recommendations: Vec::new(),
            scale_up_events: Vec::new(),
            scale_down_events: Vec::new(),
            last_active: None,
            failures,
            last_step: None,
        }
    }

    pub fn config(&self) -> &ScalingConfig {
        &self.config
    }

    /// KEDA's lastActiveTime.
    pub fn last_active(&self) -> Option<Duration> {
        self.last_active
    }

    /// Decide the desired replica count. Observations of unknown triggers, non-finite values and
    /// non-positive targets count as that trigger's errors; a trigger with no observation counts as failed.
    pub fn step(&mut self, input: &StepInput) -> Decision {
        let now = match self.last_step {
            // Time never runs backwards for the controller: a late caller is treated as "now".
            Some(last) if input.now < last => last,
            _ => input.now,
        };
        self.last_step = Some(now);
        let current = input.current_replicas;

        // Gather per-trigger readings in config order, updating KEDA's failure counters.
        let mut evaluations = Vec::with_capacity(self.config.triggers.len());
        let mut readings: Vec<Option<(MetricType, f64, Reading)>> = Vec::new();
        for (index, trigger) in self.config.triggers.iter().enumerate() {
            let observation = input
                .observations
                .iter()
                .find(|o| o.trigger == trigger.name);
            let outcome: Result<(MetricType, f64, Reading), String> = match observation {
                None => Err("no observation for this trigger".to_string()),
                Some(o) => match &o.reading {
                    Err(e) => Err(e.clone()),
                    Ok(_) if !(o.target.is_finite() && o.target > 0.0) => {
                        Err(format!("target {} is not a positive number", o.target))
                    }
                    Ok(r) if !r.value.is_finite() => {
                        Err(format!("value {} is not finite", r.value))
                    }
                    Ok(r) => Ok((o.metric_type, o.target, *r)),
                },
            };
            let (metric_type, target) = observation
                .map(|o| (o.metric_type, o.target))
                .unwrap_or((trigger.metric_type, 0.0));
            match outcome {
                Ok((metric_type, target, reading)) => {
                    self.failures[index] = 0;
                    readings.push(Some((metric_type, target, reading)));
                    evaluations.push(MetricEvaluation {
                        name: trigger.name.clone(),
                        metric_type,
                        target,
                        value: Some(reading.value),
                        active: reading.active,
                        status: MetricStatus::Ok,
                        proposal: None,
                        formula: String::new(),
                    });
                }
                Err(message) => {
                    self.failures[index] = self.failures[index].saturating_add(1);
                    let failures = self.failures[index];
                    readings.push(None);
                    evaluations.push(MetricEvaluation {
                        name: trigger.name.clone(),
                        metric_type,
                        target,
                        value: None,
                        active: false,
                        status: self.error_status(message, failures, metric_type, target, current),
                        proposal: None,
                        formula: String::new(),
                    });
                }
            }
        }

        let active_trigger = evaluations
            .iter()
            .find(|e| e.active)
            .map(|e| e.name.clone());
        let active = active_trigger.is_some();
        if active {
            self.last_active = Some(now);
        }
        let any_error = evaluations.iter().any(|e| {
            matches!(
                e.status,
                MetricStatus::Error { .. } | MetricStatus::Fallback { .. }
            )
        });
        let fallback_replicas = evaluations.iter().find_map(|e| match e.status {
            MetricStatus::Fallback { replicas, .. } => Some(replicas),
            _ => None,
        });

        let mut decision = Decision {
            at: now,
            current,
            desired: current,
            active,
            outcome: Outcome::Hpa,
            metrics: evaluations,
            winner: None,
            raw: None,
            stabilized: None,
            limits: Vec::new(),
            cooldown_remaining: None,
        };

        // --- KEDA's scale executor -------------------------------------------------------------------
        let idle_count = self
            .config
            .idle_replica_count
            .or(if self.config.min_replica_count == 0 {
                Some(0)
            } else {
                None
            });
        let hpa_min = self.config.hpa_min_replicas();
        let at_idle = idle_count == Some(current);
        if at_idle {
            // KEDA ScaledObject spec, idleReplicaCount / concepts "Activation phase": from zero (or idle)
            // any active trigger scales straight to minReplicaCount (at least 1); the HPA is off until then.
            if let Some(trigger) = active_trigger {
                decision.desired = hpa_min.min(self.config.max_replica_count);
                decision.outcome = Outcome::Activated {
                    trigger,
                    from: current,
                };
            } else if let Some(replicas) = fallback_replicas.filter(|r| *r > 0) {
                decision.desired = replicas.min(self.config.max_replica_count);
                decision.outcome = Outcome::FallbackFromZero { replicas };
            } else {
                decision.outcome = Outcome::Idle;
            }
            return decision;
        }
        if !active
            && let Some(idle) = idle_count
            && current > idle
        {
            if any_error {
                // A failing scaler is not "inactive": KEDA does not scale to zero on an error.
                if fallback_replicas.is_none() {
                    decision.outcome = Outcome::HeldByScalerError;
                    return decision;
                }
            } else {
                // KEDA ScaledObject spec, cooldownPeriod: "The period to wait after the last trigger
                // reported active before scaling the resource back to 0"; initialCooldownPeriod delays
                // the first cooldown after creation.
                let since = self.last_active.unwrap_or(Duration::ZERO);
                let ready_at =
                    (since + self.config.cooldown_period).max(self.config.initial_cooldown_period);
                if now >= ready_at {
                    decision.desired = idle;
                    decision.outcome = Outcome::CooledDown {
                        inactive_for: now - since,
                    };
                    return decision;
                }
                decision.cooldown_remaining = Some(ready_at - now);
            }
        }
        if current < self.config.min_replica_count {
            // KEDA raises a target below minReplicaCount to it.
            decision.desired = self.config.min_replica_count;
            decision.outcome = Outcome::RaisedToMin;
            return decision;
        }

        // --- The HPA --------------------------------------------------------------------------------
        // HPA controller: replicas outside [minReplicas, maxReplicas] are corrected without metrics.
        if current > self.config.max_replica_count {
            decision.desired = self.config.max_replica_count;
            decision.outcome = Outcome::AboveMax;
            return decision;
        }
        if current < hpa_min {
            decision.desired = hpa_min;
            decision.outcome = Outcome::BelowMin;
            return decision;
        }

        // Per-metric proposals (HPA docs, "Algorithm details").
        let up = &self.config.scale_up;
        let down = &self.config.scale_down;
        let mut best: Option<(u32, usize)> = None;
        let mut invalid = 0;
        for (index, evaluation) in decision.metrics.iter_mut().enumerate() {
            let value = match (&readings[index], &evaluation.status) {
                (Some((_, _, reading)), _) => reading.value,
                // KEDA's fallback: the scaler reports `target x fallbackReplicas` as an AverageValue metric,
                // so the HPA's formula yields the fallback count (ScaledObject spec, "fallback").
                (None, MetricStatus::Fallback { replicas, .. }) => {
                    let value = evaluation.target * *replicas as f64;
                    evaluation.value = Some(value);
                    value
                }
                (None, _) => {
                    invalid += 1;
                    continue;
                }
            };
            let proposal = hpa::metric_replicas(
                evaluation.metric_type,
                value,
                evaluation.target,
                current,
                input.ready_replicas,
                up,
                down,
            );
            if proposal.within_tolerance && evaluation.status == MetricStatus::Ok {
                evaluation.status = MetricStatus::WithinTolerance;
            }
            evaluation.proposal = Some(proposal.replicas);
            evaluation.formula = proposal.formula;
            // HPA docs, "Algorithm details": "the largest of the desired replica counts is chosen".
            if best.is_none_or(|(replicas, _)| proposal.replicas > replicas) {
                best = Some((proposal.replicas, index));
            }
        }
        let Some((raw, winner)) = best else {
            decision.outcome = Outcome::NoMetrics;
            return decision;
        };
        decision.winner = Some(decision.metrics[winner].name.clone());
        decision.raw = Some(raw);
        // HPA docs: "If any of these metrics cannot be converted into a desired replica count ... and a
        // scale down is suggested by the metrics which can be fetched, scaling is skipped."
        if invalid > 0 && raw < current {
            decision.outcome = Outcome::ScaleDownBlockedByInvalidMetrics;
            return decision;
        }

        let stabilized = hpa::stabilize(&mut self.recommendations, now, current, raw, up, down);
        decision.stabilized = Some(stabilized.replicas);
        if stabilized.replicas != raw {
            let direction = if raw > current {
                Direction::Up
            } else {
                Direction::Down
            };
            let window = if direction == Direction::Up {
                up.stabilization_window
            } else {
                down.stabilization_window
            };
            decision.limits.push(Limit::Stabilization {
                direction,
                window,
                from: raw,
                to: stabilized.replicas,
            });
        }

        // Rate limits and bounds (HPA docs, "Scaling policies"; kube-controller-manager
        // convertDesiredReplicasWithBehaviorRate).
        let mut desired = stabilized.replicas;
        let max = self.config.max_replica_count;
        if desired > current {
            let limit = hpa::scale_up_limit(
                current,
                up,
                &self.scale_up_events,
                &self.scale_down_events,
                now,
            )
            .max(current as i64);
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            if max > limit {
                if desired > limit {
                    desired = limit;
                    decision
                        .limits
                        .push(if up.select_policy == SelectPolicy::Disabled {
                            Limit::Disabled {
                                direction: Direction::Up,
                            }
                        } else {
                            Limit::Policy {
                                direction: Direction::Up,
                                select: up.select_policy,
                                policies: describe_policies(up),
                                limit,
                            }
                        });
                }
            } else if desired > max {
                desired = max;
                decision.limits.push(Limit::MaxReplicas { max });
            }
        } else if desired < current {
            let limit = hpa::scale_down_limit(
                current,
                down,
                &self.scale_up_events,
                &self.scale_down_events,
                now,
            )
            .min(current as i64);
            if (hpa_min as i64) < limit {
                let limit = limit as u32;
                if desired < limit {
                    desired = limit;
                    decision
                        .limits
                        .push(if down.select_policy == SelectPolicy::Disabled {
                            Limit::Disabled {
                                direction: Direction::Down,
                            }
                        } else {
                            Limit::Policy {
                                direction: Direction::Down,
                                select: down.select_policy,
                                policies: describe_policies(down),
                                limit,
                            }
                        });
                }
            } else if desired < hpa_min {
                desired = hpa_min;
                decision.limits.push(Limit::MinReplicas { min: hpa_min });
            }
        }
        decision.desired = desired;

        // The HPA records its own scale events for later policy periods.
        let now_event = |replicas| Stamped { at: now, replicas };
        if desired > current {
            self.scale_up_events.push(now_event(desired - current));
        } else if desired < current {
            self.scale_down_events.push(now_event(current - desired));
        }
        let keep_up = up.longest_period();
        let keep_down = down.longest_period();
        self.scale_up_events.retain(|e| e.at + keep_up > now);
        self.scale_down_events.retain(|e| e.at + keep_down > now);
        decision
    }

    /// The status of a failing trigger: plain error, or fallback once failures exceed failureThreshold.
    /// KEDA's fallback: `numberOfFailures > failureThreshold`, only for AverageValue metrics ("It only
    /// supports scalers whose target is an AverageValue metric").
    fn error_status(
        &self,
        message: String,
        failures: u32,
        metric_type: MetricType,
        target: f64,
        current: u32,
    ) -> MetricStatus {
        match self.config.fallback {
            // The fallback value is `target x replicas`: without a known positive target there is none.
            Some(fallback)
                if metric_type == MetricType::AverageValue
                    && target.is_finite()
                    && target > 0.0
                    && failures > fallback.failure_threshold
                    && fallback.behavior != FallbackBehavior::ScalingModifiers =>
            {
                let replicas = match fallback.behavior {
                    FallbackBehavior::CurrentReplicas => current,
                    FallbackBehavior::CurrentReplicasIfHigher => current.max(fallback.replicas),
                    FallbackBehavior::CurrentReplicasIfLower => current.min(fallback.replicas),
                    _ => fallback.replicas,
                };
                MetricStatus::Fallback {
                    message,
                    failures,
                    replicas,
                    behavior: fallback.behavior,
                }
            }
            _ => MetricStatus::Error { message, failures },
        }
    }
}
