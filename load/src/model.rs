//! The generator's shared vocabulary, a leaf that every other module may use and that uses none of them: how a
//! request ended ([`Outcome`]), what a replica source saw ([`ReplicaSnapshot`], [`TimelinePoint`]) and how a run
//! sends its load ([`ArrivalMode`], [`Split`]).

use contract::metrics::REQUEST_OUTCOMES;
use serde::{Deserialize, Serialize};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 1xx-3xx response.
    Ok,
    /// 429 Too Many Requests: the target shed load on purpose.
    Throttled,
    /// Any other 4xx/5xx response.
    HttpError,
    /// No complete response within the per-request timeout.
    Timeout,
    /// Could not connect.
    ConnectError,
    /// The connection failed mid-request, or the target set was empty.
    OtherError,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Throttled,
        Outcome::HttpError,
        Outcome::Timeout,
        Outcome::ConnectError,
        Outcome::OtherError,
    ];

    /// The `outcome` label value of `generator_requests_total` (the contract's list, in this enum's order).
    pub fn label(self) -> &'static str {
        REQUEST_OUTCOMES[self as usize]
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether the latency of this outcome is recorded (responses and timeouts; a failed connect says nothing about
    /// the target's latency).
    pub fn has_latency(self) -> bool {
        !matches!(self, Outcome::ConnectError | Outcome::OtherError)
    }
}

/// One observation of the target's replicas. Counts are `None` when the source does not know them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSnapshot {
    /// Replicas the autoscaler wants (HPA `desiredReplicas`, or the Deployment's `spec.replicas`).
    pub desired: Option<u32>,
    /// Replicas that exist (Deployment `status.replicas`).
    pub current: Option<u32>,
    /// Replicas ready for traffic (Deployment `status.readyReplicas`).
    pub ready: Option<u32>,
    /// Free text: ScaledObject conditions, the scaler's reasoning, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which source answered (`kubernetes`, `explain`, `prometheus`, `lab`, ...).
    #[serde(default)]
    pub source: String,
}

/// One replica observation at `t_s` seconds after load start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    #[serde(flatten)]
    pub snapshot: ReplicaSnapshot,
}

/// How arrivals are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalMode {
    /// Open model: the profile's arrival rate, independent of response times.
    Open,
    /// Closed loop: `connections` workers each send the next request as soon as the previous one answered
    /// (`--rate max`). The profile's rates are ignored, its duration and request mix are used.
    ClosedLoop { connections: usize },
}

/// This generator's share of a distributed run (an Indexed Job): it sends requests `k` of the full schedule with
/// `k % count == index`, so N generators together send exactly the profile's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub index: u32,
    pub count: u32,
}

impl Default for Split {
    fn default() -> Self {
        Split { index: 0, count: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_the_contracts_and_match_the_serde_names() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels, REQUEST_OUTCOMES);
        for o in Outcome::ALL {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::json!(o.label())
            );
        }
    }
}
