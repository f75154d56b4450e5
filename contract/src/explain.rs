//! The scaler's `GET /explain` document: what each trigger of each ScaledObject read, from which source, how old the
//! value is, and how many replicas the HPA would want for it. The scaler serializes these types; the generator's
//! monitor, the lab and the tests deserialize them. docs/scaler.md describes every field.

use serde::{Deserialize, Serialize};

/// The whole `/explain` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// When the scaler built this answer (RFC 3339, milliseconds).
    pub generated_at: String,
    /// One entry per ScaledObject the scaler serves, sorted by `namespace/name`.
    pub scaled_objects: Vec<ExplainScaledObject>,
    /// One entry per metric source (a Prometheus URL or a set of scraped pods).
    pub sources: Vec<ExplainSource>,
}

impl Explain {
    /// The entry of one ScaledObject, by `namespace/name`, or by `name` alone when that is unambiguous.
    pub fn scaled_object(&self, key: &str) -> Option<&ExplainScaledObject> {
        if let Some(exact) = self.scaled_objects.iter().find(|o| o.scaled_object == key) {
            return Some(exact);
        }
        if key.contains('/') {
            return None;
        }
        let mut by_name = self
            .scaled_objects
            .iter()
            .filter(|o| o.scaled_object.rsplit('/').next() == Some(key));
        match (by_name.next(), by_name.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

/// One ScaledObject and its triggers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainScaledObject {
    /// `namespace/name`.
    pub scaled_object: String,
    /// Whether any trigger with a fresh value is active.
    pub active: bool,
    pub triggers: Vec<ExplainTrigger>,
}

impl ExplainScaledObject {
    /// The largest replica count any trigger asks for (the HPA takes the maximum over its metrics), and the current
    /// count the scaler last saw (the largest any trigger reports).
    pub fn replicas(&self) -> (Option<u64>, Option<u32>) {
        let desired = self
            .triggers
            .iter()
            .filter(|t| !t.stale)
            .filter_map(|t| t.replicas_for_value)
            .max();
        let current = self
            .triggers
            .iter()
            .filter_map(|t| t.current_replicas)
            .max();
        (desired, current)
    }
}

/// One trigger of a ScaledObject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainTrigger {
    /// `namespace/name` of the ScaledObject.
    pub scaled_object: String,
    /// The metricName (also the `trigger` label of the scaler's metrics).
    pub trigger: String,
    pub metric_name: String,
    /// The trigger kind (`request_rate`, `latency`, `allocator_pressure`, `backlog`, `query`, `kafka`).
    pub kind: String,
    /// The source id (`prometheus:<url>`, `direct:<targets>` or `kafka:<bootstrapServers>/<group>/<topic or *>`).
    pub source: String,
    /// The PromQL (or the direct-source description) that gives the value.
    pub query: String,
    pub value: Option<f64>,
    pub age_seconds: Option<f64>,
    /// Older than the source's max staleness: GetMetrics answers UNAVAILABLE.
    pub stale: bool,
    pub target: f64,
    pub activation_target: f64,
    pub active: Option<bool>,
    pub above_activation: Option<bool>,
    /// `AverageValue` or `Value`.
    pub metric_type: String,
    pub window_seconds: u64,
    pub route: Option<String>,
    /// Replicas behind the value (pods scraped, or KEDA's count when known).
    pub current_replicas: Option<u32>,
    /// What the HPA formula gives for this value alone.
    pub replicas_for_value: Option<u64>,
    pub error: Option<String>,
    pub pending: Option<String>,
    pub note: Option<String>,
    /// `kafka` triggers only: the lag of every partition, the rule KEDA's kafka scaler applies to it, and the
    /// partition cap. Absent for the other kinds (their JSON is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<ExplainKafka>,
}

/// How a `kafka` trigger's value was made from the consumer group's offsets (KEDA's kafka scaler rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainKafka {
    pub consumer_group: String,
    /// The topic, or None for every topic the group has committed offsets for.
    pub topic: Option<String>,
    /// Sum of the partitions' `lag` (persistent lag excluded when `excludePersistentLag`), before the cap.
    pub total_lag: i64,
    /// Sum of the partitions' `lag_with_persistent`: what activation compares with `activationLagThreshold`.
    pub total_lag_with_persistent: i64,
    /// Partitions counted (after `partitionLimitation`).
    pub partitions: u64,
    /// Partitions whose `lag` is above 0.
    pub partitions_with_lag: u64,
    /// Most replicas the value may ask for (the partition count, or the partitions with lag when
    /// `limitToPartitionsWithLag`); None when `allowIdleConsumers` lifts the cap.
    pub cap_replicas: Option<u64>,
    /// `cap_replicas × lagThreshold`: the largest value the trigger reports; None without a cap.
    pub cap_value: Option<i64>,
    /// Whether the cap lowered the value (`total_lag` > `cap_value`).
    pub cap_applied: bool,
    /// One entry per partition counted, sorted by topic and partition.
    pub partition_lags: Vec<ExplainKafkaPartition>,
}

/// One partition of a `kafka` trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainKafkaPartition {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; None when the group has none (Kafka's -1, "invalid offset").
    pub committed: Option<i64>,
    /// The partition's log-end offset (high watermark); None when the broker did not return it.
    pub log_end: Option<i64>,
    /// The committed offset seen by the previous poll (kept only with `excludePersistentLag`).
    pub previous_committed: Option<i64>,
    /// The lag counted in the value.
    pub lag: i64,
    /// The lag counted for activation (persistent lag included).
    pub lag_with_persistent: i64,
    /// Which rule gave `lag`, e.g. `log-end - committed`, `invalid offset, latest -> 1`, `persistent lag excluded`.
    pub rule: String,
}

/// One metric source and its polling statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainSource {
    pub source: String,
    /// `prometheus`, `direct` or `kafka`.
    pub kind: String,
    pub poll_interval_seconds: f64,
    pub max_staleness_seconds: f64,
    pub polls: u64,
    pub errors: u64,
    pub requests: u64,
    pub last_poll_age_seconds: Option<f64>,
    pub last_poll_duration_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub pods: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, desired: &[(Option<u64>, bool)]) -> ExplainScaledObject {
        ExplainScaledObject {
            scaled_object: key.into(),
            active: true,
            triggers: desired
                .iter()
                .enumerate()
                .map(|(i, (replicas, stale))| ExplainTrigger {
                    scaled_object: key.into(),
                    trigger: format!("t{i}"),
                    metric_name: format!("t{i}"),
                    kind: "backlog".into(),
                    source: "direct:x".into(),
                    query: String::new(),
                    value: Some(1.0),
                    age_seconds: Some(0.1),
                    stale: *stale,
                    target: 1.0,
                    activation_target: 0.0,
                    active: Some(true),
                    above_activation: Some(true),
                    metric_type: "AverageValue".into(),
                    window_seconds: 30,
                    route: None,
                    current_replicas: Some(2),
                    replicas_for_value: *replicas,
                    error: None,
                    pending: None,
                    kafka: None,
                    note: None,
                })
                .collect(),
        }
    }

    #[test]
    fn picks_one_scaled_object_by_key_or_unique_name() {
        let explain = Explain {
            generated_at: "now".into(),
            scaled_objects: vec![
                object("lab/consumer", &[(Some(3), false)]),
                object("other/consumer", &[(Some(9), false)]),
                object("lab/kafka", &[(Some(5), false)]),
            ],
            sources: vec![],
        };
        assert_eq!(
            explain.scaled_object("lab/consumer").unwrap().replicas().0,
            Some(3)
        );
        assert_eq!(
            explain.scaled_object("kafka").unwrap().scaled_object,
            "lab/kafka"
        );
        assert!(
            explain.scaled_object("consumer").is_none(),
            "ambiguous name"
        );
        assert!(explain.scaled_object("lab/missing").is_none());
    }

    #[test]
    fn desired_is_the_max_over_fresh_triggers() {
        let o = object(
            "a/b",
            &[
                (Some(2), false),
                (Some(7), true),
                (None, false),
                (Some(4), false),
            ],
        );
        assert_eq!(o.replicas(), (Some(4), Some(2)));
    }

    #[test]
    fn round_trips_through_json() {
        let explain = Explain {
            generated_at: "2026-01-01T00:00:00.000Z".into(),
            scaled_objects: vec![object("a/b", &[(Some(2), false)])],
            sources: vec![ExplainSource {
                source: "direct:x".into(),
                kind: "direct".into(),
                poll_interval_seconds: 1.0,
                max_staleness_seconds: 10.0,
                polls: 3,
                errors: 0,
                requests: 3,
                last_poll_age_seconds: Some(0.5),
                last_poll_duration_seconds: Some(0.01),
                last_error: None,
                pods: Some(2),
            }],
        };
        let text = serde_json::to_string(&explain).unwrap();
        assert_eq!(serde_json::from_str::<Explain>(&text).unwrap(), explain);
    }

    #[test]
    fn the_kafka_field_is_absent_for_other_triggers_and_optional_when_reading() {
        let trigger = object("ns/a", &[(Some(1), false)]).triggers.remove(0);
        let json = serde_json::to_value(&trigger).unwrap();
        assert!(json.get("kafka").is_none(), "{json}");
        // An older document (no `kafka` key) still parses.
        let back: ExplainTrigger = serde_json::from_value(json).unwrap();
        assert_eq!(back, trigger);
    }
}
