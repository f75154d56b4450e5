//! The cached state of one trigger and the rules that move it: a fresh value replaces the old one and advances the
//! debounced activation (active at once above `activationTarget`, inactive only after N consecutive polls at or below
//! it); a failed poll keeps the last value (served until stale) and records why; and the staleness bound decides
//! whether an RPC gets the value or UNAVAILABLE. No I/O: the pollers and the registry call it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::kafka::LagReport;

/// The cached state of one trigger.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Last value read successfully; kept when later polls fail (served until stale).
    pub value: Option<f64>,
    pub value_at: Option<Instant>,
    pub value_wall: Option<SystemTime>,
    /// The latest poll's failure for this trigger; cleared by a success.
    pub error: Option<String>,
    /// Why there is no value yet although nothing failed (e.g. a rate needs two scrapes).
    pub pending: Option<String>,
    /// A remark about the last value (e.g. "no request completed in the window").
    pub note: Option<String>,
    /// Debounced activation state (hysteresis), None before the first value.
    pub active: Option<bool>,
    /// Consecutive polls at or below activationTarget while active.
    pub polls_below: u32,
    /// Pods behind the value, when the source can tell.
    pub replicas: Option<u32>,
    /// Series that matched the trigger's filter (direct source).
    pub series: Option<usize>,
    /// What activation compared with the activation target, when it is not `value` (kafka: the lag with persistent
    /// lag included and no cap, as KEDA's kafka scaler decides activity).
    pub activation_value: Option<f64>,
    /// How a `kafka` trigger's value was made (per-partition lag, rules, cap), for `/explain`.
    pub kafka: Option<Arc<LagReport>>,
}

/// One successful reading of a trigger's value by a poll.
#[derive(Debug, Clone)]
pub struct Observed {
    pub value: f64,
    pub at: Instant,
    pub wall: SystemTime,
    pub note: Option<String>,
    pub replicas: Option<u32>,
    pub series: Option<usize>,
    /// Compared with the activation target instead of `value` when set (see [`Reading::activation_value`]).
    pub activation_value: Option<f64>,
    pub kafka: Option<Arc<LagReport>>,
}

impl Reading {
    /// Stores a fresh value and returns the new activation state: active as soon as the value is above
    /// `activation_target`; inactive only after `deactivate_after_polls` consecutive polls at or below it (hysteresis
    /// against flapping around the threshold).
    pub fn record_value(
        &mut self,
        observed: Observed,
        activation_target: f64,
        deactivate_after_polls: u32,
    ) -> bool {
        let above = observed.activation_value.unwrap_or(observed.value) > activation_target;
        self.value = Some(observed.value);
        self.value_at = Some(observed.at);
        self.value_wall = Some(observed.wall);
        self.error = None;
        self.pending = None;
        self.note = observed.note;
        self.replicas = observed.replicas;
        self.series = observed.series;
        self.activation_value = observed.activation_value;
        self.kafka = observed.kafka;
        let active = match self.active {
            Some(true) if !above => {
                self.polls_below += 1;
                self.polls_below < deactivate_after_polls
            }
            _ => {
                self.polls_below = 0;
                above
            }
        };
        self.active = Some(active);
        active
    }

    /// Records a failed poll; the last value stays (until stale).
    pub fn record_error(&mut self, error: String) {
        self.error = Some(error);
        self.pending = None;
    }

    /// Records a poll that could not compute a value yet, without failing (e.g. a rate's first scrape).
    pub fn record_pending(&mut self, why: String, replicas: Option<u32>) {
        self.pending = Some(why);
        self.error = None;
        self.replicas = replicas;
    }

    /// The value and activation if the value is at most `max_staleness` old at `now`; otherwise the value's age
    /// (None when there is no value at all).
    pub fn fresh(
        &self,
        now: Instant,
        max_staleness: Duration,
    ) -> Result<(f64, bool), Option<Duration>> {
        match (self.value, self.value_at) {
            (Some(value), Some(at)) => {
                let age = now.saturating_duration_since(at);
                if age <= max_staleness {
                    Ok((value, self.active.unwrap_or(false)))
                } else {
                    Err(Some(age))
                }
            }
            _ => Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(value: f64, at: Instant) -> Observed {
        Observed {
            value,
            at,
            wall: SystemTime::now(),
            note: None,
            replicas: Some(1),
            series: None,
            activation_value: None,
            kafka: None,
        }
    }

    #[test]
    fn activation_is_immediate_and_deactivation_waits_for_n_polls_below() {
        let t0 = Instant::now();
        let mut reading = Reading::default();
        assert!(!reading.record_value(observed(0.0, t0), 0.0, 3));
        assert!(
            reading.record_value(observed(5.0, t0), 0.0, 3),
            "active at once"
        );
        assert!(reading.record_value(observed(0.0, t0), 0.0, 3), "1 below");
        assert!(reading.record_value(observed(0.0, t0), 0.0, 3), "2 below");
        // A value above resets the count.
        assert!(reading.record_value(observed(1.0, t0), 0.0, 3));
        assert!(reading.record_value(observed(0.0, t0), 0.0, 3));
        assert!(reading.record_value(observed(0.0, t0), 0.0, 3));
        assert!(
            !reading.record_value(observed(0.0, t0), 0.0, 3),
            "3rd poll below"
        );
        assert_eq!(reading.active, Some(false));
        // With N = 1 there is no hysteresis.
        let mut plain = Reading::default();
        assert!(plain.record_value(observed(2.0, t0), 1.0, 1));
        assert!(
            !plain.record_value(observed(1.0, t0), 1.0, 1),
            "at the target is not above"
        );
    }

    #[test]
    fn errors_keep_the_value_until_it_is_stale() {
        let t0 = Instant::now();
        let mut reading = Reading::default();
        assert_eq!(reading.fresh(t0, Duration::from_secs(3)), Err(None));
        reading.record_value(observed(7.0, t0), 0.0, 3);
        reading.record_error("connection refused".into());
        assert_eq!(reading.error.as_deref(), Some("connection refused"));
        assert_eq!(
            reading.fresh(t0 + Duration::from_secs(3), Duration::from_secs(3)),
            Ok((7.0, true))
        );
        assert_eq!(
            reading.fresh(t0 + Duration::from_secs(4), Duration::from_secs(3)),
            Err(Some(Duration::from_secs(4)))
        );
        reading.record_value(observed(1.0, t0 + Duration::from_secs(5)), 0.0, 3);
        assert_eq!(reading.error, None, "a success clears the error");
    }

    #[test]
    fn an_activation_value_decides_activation_instead_of_the_value() {
        let t0 = Instant::now();
        let mut reading = Reading::default();
        // A kafka trigger whose value is 0 (persistent lag excluded) but whose lag is 30: active, as in KEDA.
        let stuck = Observed {
            activation_value: Some(30.0),
            ..observed(0.0, t0)
        };
        assert!(reading.record_value(stuck, 5.0, 1));
        assert_eq!(reading.activation_value, Some(30.0));
        let drained = Observed {
            activation_value: Some(5.0),
            ..observed(0.0, t0)
        };
        assert!(
            !reading.record_value(drained, 5.0, 1),
            "at the threshold is not above"
        );
    }
}
