//! The Kafka scenario's `kafka` trigger: the metadata the run takes from it (group, topic, lagThreshold), and a
//! decision as the scenario prints it (naming the partition cap when the lag value sits at it).

use crate::LabError;
use crate::view::DecisionRecord;

use super::PARTITIONS;

/// The `kafka` trigger's metadata the run needs: (group, topic, lagThreshold).
pub(super) fn kafka_trigger(
    config: &autoscaler::ScalingConfig,
) -> Result<(String, String, f64), LabError> {
    let trigger = config
        .triggers
        .iter()
        .find(|t| t.metadata.get("trigger").map(String::as_str) == Some("kafka"))
        .ok_or_else(|| {
            LabError::Usage(
                "the Kafka scenario needs a ScaledObject with an external-push `trigger: kafka`"
                    .into(),
            )
        })?;
    let get = |key: &str| {
        trigger.metadata.get(key).cloned().ok_or_else(|| {
            LabError::Usage(format!("trigger {:?} has no metadata.{key}", trigger.name))
        })
    };
    let threshold = trigger
        .metadata
        .get("lagThreshold")
        .map_or(Ok(10.0), |v| v.parse::<f64>())
        .map_err(|e| LabError::Usage(format!("lagThreshold: {e}")))?;
    Ok((get("consumerGroup")?, get("topic")?, threshold))
}

/// One decision as the Kafka scenario prints it; the partition cap is named when the lag value sits at it.
pub fn describe(d: &DecisionRecord, cap_value: f64) -> String {
    let metrics: Vec<String> = d
        .metrics
        .iter()
        .map(|m| {
            let capped = m.value.is_some_and(|v| (v - cap_value).abs() < 1e-9);
            format!(
                "{} value={} target={} proposal={}{}",
                m.name,
                m.value.map_or("-".into(), |v| format!("{v}")),
                m.target,
                m.proposal.map_or("-".into(), |p| p.to_string()),
                if capped {
                    format!(
                        " (partition cap: {PARTITIONS} partitions x lagThreshold {} = {cap_value})",
                        m.target
                    )
                } else {
                    String::new()
                }
            )
        })
        .collect();
    format!(
        "t={:>6.1}s replicas {} -> {}  {}  {}",
        d.t_s,
        d.current,
        d.desired,
        metrics.join("; "),
        d.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::BUILTIN_KAFKA_SCALEDOBJECT;

    #[test]
    fn the_builtin_scaledobject_names_group_topic_and_threshold() {
        let config =
            autoscaler::ScalingConfig::from_yaml(BUILTIN_KAFKA_SCALEDOBJECT).expect("parses");
        let (group, topic, threshold) = kafka_trigger(&config).expect("kafka trigger");
        assert_eq!(
            (group.as_str(), topic.as_str(), threshold),
            ("consumer", "orders", 20.0)
        );
        // Above the partitions, so the cap is what limits the scale-up.
        assert!(config.max_replica_count > PARTITIONS as u32);
    }

    #[test]
    fn a_value_at_the_partition_cap_is_named_and_others_are_not() {
        let record = |value: f64| DecisionRecord {
            t_s: 1.0,
            current: 1,
            ready: 1,
            desired: 3,
            active: true,
            winner: Some("kafka-lag".into()),
            raw: Some(4),
            reason: "scale 1 -> 3".into(),
            metrics: vec![crate::view::MetricRecord {
                name: "kafka-lag".into(),
                metric_type: "AverageValue".into(),
                value: Some(value),
                target: 20.0,
                active: true,
                proposal: Some(4),
                status: "ok".into(),
            }],
        };
        assert!(
            describe(&record(80.0), 80.0)
                .contains("partition cap: 4 partitions x lagThreshold 20 = 80")
        );
        assert!(!describe(&record(79.0), 80.0).contains("partition cap"));
    }
}
