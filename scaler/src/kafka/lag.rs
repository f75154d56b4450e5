//! The lag of a consumer group with the rules of KEDA's `kafka` scaler, so that `trigger: kafka` over
//! `external-push` gives the HPA the value KEDA's built-in `type: kafka` trigger would. Pure: offsets in, value out.
//!
//! The rules, from KEDA's `pkg/scalers/kafka_scaler.go` (`getLagForPartition`, `getTotalLag`,
//! `GetMetricsAndActivity`) and its documentation (keda.sh/docs/latest/scalers/apache-kafka):
//! - lag of a partition = log-end offset (high watermark) - the group's committed offset;
//! - no committed offset (Kafka answers -1, "invalid offset"): with `offsetResetPolicy: latest` the lag is **1**, so one
//!   consumer stays up to commit a first offset, or 0 with `scaleToZeroOnInvalidOffset: true` (kedacore/keda#2612);
//!   with `earliest` the lag is the whole log-end offset (the consumer will replay everything), or 0 with
//!   `scaleToZeroOnInvalidOffset: true`;
//! - a partition missing from the log-end answer counts 0;
//! - `excludePersistentLag`: a partition whose committed offset equals the one seen by the previous poll counts 0 in
//!   the value ("unable to be consumed"), but still counts for activation; the first poll of a partition only records;
//! - the value is the sum; unless `allowIdleConsumers`, it is capped so that it never asks for more replicas than
//!   partitions (or than partitions with lag > 0 under `limitToPartitionsWithLag`): at most
//!   `partitions × lagThreshold`;
//! - activation: the sum with persistent lag included, uncapped, strictly above `activationLagThreshold`.
//!
//! One deliberate difference: KEDA tests the cap as `totalLag / lagThreshold > partitions` in integer division, so a
//! total between `partitions × lagThreshold + 1` and `(partitions + 1) × lagThreshold - 1` passes uncapped and the
//! HPA's `ceil(total / lagThreshold)` asks for one replica more than there are partitions. Here the cap applies as
//! soon as `total > partitions × lagThreshold`, which is the guarantee KEDA documents ("the number of replicas will not
//! exceed the number of partitions").

use std::collections::HashMap;

use contract::explain::{ExplainKafka, ExplainKafkaPartition};

use crate::trigger::{KafkaSpec, OffsetResetPolicy};

/// What the brokers said about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; None for Kafka's -1 (nothing committed).
    pub committed: Option<i64>,
    /// The high watermark; None when the broker's answer lacked the partition.
    pub log_end: Option<i64>,
}

/// The committed offset of each (topic, partition) at the previous poll, per trigger (`excludePersistentLag`).
pub type PreviousOffsets = HashMap<(String, i32), i64>;

/// One partition's share of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub offsets: PartitionOffsets,
    pub previous_committed: Option<i64>,
    /// Counted in the value.
    pub lag: i64,
    /// Counted for activation.
    pub lag_with_persistent: i64,
    pub rule: &'static str,
}

/// The value of a `kafka` trigger and how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagReport {
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
    pub total_lag_with_persistent: i64,
    pub partitions_with_lag: u64,
    /// Most replicas the value may ask for; None with `allowIdleConsumers`.
    pub cap_replicas: Option<u64>,
    pub cap_value: Option<i64>,
    pub cap_applied: bool,
    /// What GetMetrics reports: `total_lag`, capped.
    pub value: i64,
}

impl LagReport {
    /// The value activation compares with `activationLagThreshold` (KEDA: `totalLagWithPersistent`).
    pub fn activation_value(&self) -> i64 {
        self.total_lag_with_persistent
    }

    /// The `/explain` form.
    pub fn explain(&self, consumer_group: &str, topic: Option<&str>) -> ExplainKafka {
        ExplainKafka {
            consumer_group: consumer_group.to_string(),
            topic: topic.map(str::to_string),
            total_lag: self.total_lag,
            total_lag_with_persistent: self.total_lag_with_persistent,
            partitions: self.partitions.len() as u64,
            partitions_with_lag: self.partitions_with_lag,
            cap_replicas: self.cap_replicas,
            cap_value: self.cap_value,
            cap_applied: self.cap_applied,
            partition_lags: self
                .partitions
                .iter()
                .map(|p| ExplainKafkaPartition {
                    topic: p.offsets.topic.clone(),
                    partition: p.offsets.partition,
                    committed: p.offsets.committed,
                    log_end: p.offsets.log_end,
                    previous_committed: p.previous_committed,
                    lag: p.lag,
                    lag_with_persistent: p.lag_with_persistent,
                    rule: p.rule.to_string(),
                })
                .collect(),
        }
    }
}

pub const RULE_LAG: &str = "log-end - committed";
pub const RULE_FIRST_SEEN: &str = "log-end - committed (first poll: previous offset recorded)";
pub const RULE_PERSISTENT: &str =
    "persistent lag excluded (committed offset unchanged since the previous poll)";
pub const RULE_INVALID_LATEST: &str =
    "invalid offset, latest -> 1 (one consumer to commit a first offset)";
pub const RULE_INVALID_LATEST_ZERO: &str =
    "invalid offset, latest, scaleToZeroOnInvalidOffset -> 0";
pub const RULE_INVALID_EARLIEST: &str = "invalid offset, earliest -> log-end";
pub const RULE_INVALID_EARLIEST_ZERO: &str =
    "invalid offset, earliest, scaleToZeroOnInvalidOffset -> 0";
pub const RULE_NO_LOG_END: &str = "log-end offset missing -> 0";

/// The trigger's value from the offsets of one poll. `previous` is the trigger's memory across polls (updated here).
/// Fails, as KEDA does, when `partitionLimitation` leaves no partition of the topic.
pub fn evaluate(
    spec: &KafkaSpec,
    offsets: &[PartitionOffsets],
    previous: &mut PreviousOffsets,
) -> Result<LagReport, String> {
    let mut counted: Vec<&PartitionOffsets> = offsets
        .iter()
        .filter(|o| {
            spec.partition_limitation
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&o.partition).is_ok())
        })
        .collect();
    if let Some(ids) = &spec.partition_limitation
        && counted.is_empty()
    {
        return Err(format!(
            "partitionLimitation {ids:?} leaves no partition of the topic ({} partition(s) {:?})",
            offsets.len(),
            offsets.iter().map(|o| o.partition).collect::<Vec<_>>()
        ));
    }
    counted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let partitions: Vec<PartitionLag> = counted
        .into_iter()
        .map(|o| partition_lag(spec, o, previous))
        .collect();
    let total_lag: i64 = partitions.iter().map(|p| p.lag).sum();
    let total_lag_with_persistent: i64 = partitions.iter().map(|p| p.lag_with_persistent).sum();
    let partitions_with_lag = partitions.iter().filter(|p| p.lag > 0).count() as u64;
    // KEDA caps unless allowIdleConsumers, and always under limitToPartitionsWithLag.
    let capped = !spec.allow_idle_consumers || spec.limit_to_partitions_with_lag;
    let cap_replicas = match (capped, spec.limit_to_partitions_with_lag) {
        (false, _) => None,
        (true, true) => Some(partitions_with_lag),
        (true, false) => Some(partitions.len() as u64),
    };
    let cap_value =
        cap_replicas.map(|replicas| (replicas as i64).saturating_mul(spec.lag_threshold));
    let cap_applied = cap_value.is_some_and(|cap| total_lag > cap);
    let value = match cap_value {
        Some(cap) if cap_applied => cap,
        _ => total_lag,
    };
    Ok(LagReport {
        partitions,
        total_lag,
        total_lag_with_persistent,
        partitions_with_lag,
        cap_replicas,
        cap_value,
        cap_applied,
        value,
    })
}

/// KEDA's `getLagForPartition`: (lag, lag with persistent lag) of one partition and the rule that gave it.
fn partition_lag(
    spec: &KafkaSpec,
    o: &PartitionOffsets,
    previous: &mut PreviousOffsets,
) -> PartitionLag {
    let key = (o.topic.clone(), o.partition);
    let previous_committed = spec
        .exclude_persistent_lag
        .then(|| previous.get(&key).copied())
        .flatten();
    let done = |lag: i64, lag_with_persistent: i64, rule: &'static str| PartitionLag {
        offsets: o.clone(),
        previous_committed,
        lag,
        lag_with_persistent,
        rule,
    };
    let Some(committed) = o.committed else {
        return match (
            spec.offset_reset_policy,
            spec.scale_to_zero_on_invalid_offset,
            o.log_end,
        ) {
            (OffsetResetPolicy::Latest, false, _) => done(1, 1, RULE_INVALID_LATEST),
            (OffsetResetPolicy::Latest, true, _) => done(0, 0, RULE_INVALID_LATEST_ZERO),
            (OffsetResetPolicy::Earliest, true, _) => done(0, 0, RULE_INVALID_EARLIEST_ZERO),
            (OffsetResetPolicy::Earliest, false, None) => done(0, 0, RULE_NO_LOG_END),
            (OffsetResetPolicy::Earliest, false, Some(log_end)) => {
                done(log_end, log_end, RULE_INVALID_EARLIEST)
            }
        };
    };
    let Some(log_end) = o.log_end else {
        return done(0, 0, RULE_NO_LOG_END);
    };
    let lag = log_end - committed;
    if spec.exclude_persistent_lag {
        match previous.insert(key, committed) {
            None => return done(lag, lag, RULE_FIRST_SEEN),
            // KEDA returns 0 whatever the lag; the rule only says "excluded" when there was lag to exclude.
            Some(before) if before == committed && lag != 0 => {
                return done(0, lag, RULE_PERSISTENT);
            }
            Some(before) if before == committed => return done(0, 0, RULE_LAG),
            Some(_) => {}
        }
    }
    done(lag, lag, RULE_LAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KafkaSpec {
        KafkaSpec {
            lag_threshold: 10,
            activation_lag_threshold: 0,
            offset_reset_policy: OffsetResetPolicy::Latest,
            allow_idle_consumers: false,
            scale_to_zero_on_invalid_offset: false,
            exclude_persistent_lag: false,
            limit_to_partitions_with_lag: false,
            partition_limitation: None,
        }
    }

    fn part(partition: i32, committed: Option<i64>, log_end: Option<i64>) -> PartitionOffsets {
        PartitionOffsets {
            topic: "t".into(),
            partition,
            committed,
            log_end,
        }
    }

    /// One partition, one poll: (policy, scaleToZeroOnInvalidOffset, committed, log-end) -> (lag, rule).
    #[test]
    fn partition_rules_follow_keda() {
        use OffsetResetPolicy::{Earliest, Latest};
        type Case = (
            OffsetResetPolicy,
            bool,
            Option<i64>,
            Option<i64>,
            i64,
            &'static str,
        );
        let cases: &[Case] = &[
            (Latest, false, Some(40), Some(100), 60, RULE_LAG),
            (Earliest, false, Some(40), Some(100), 60, RULE_LAG),
            (Latest, false, Some(100), Some(100), 0, RULE_LAG),
            // Committed past the log end (e.g. after truncation): KEDA does not clamp.
            (Latest, false, Some(105), Some(100), -5, RULE_LAG),
            (Latest, false, None, Some(100), 1, RULE_INVALID_LATEST),
            (Latest, false, None, Some(0), 1, RULE_INVALID_LATEST),
            (Latest, true, None, Some(100), 0, RULE_INVALID_LATEST_ZERO),
            (Earliest, false, None, Some(100), 100, RULE_INVALID_EARLIEST),
            (Earliest, false, None, Some(0), 0, RULE_INVALID_EARLIEST),
            (
                Earliest,
                true,
                None,
                Some(100),
                0,
                RULE_INVALID_EARLIEST_ZERO,
            ),
            (Earliest, false, None, None, 0, RULE_NO_LOG_END),
            (Latest, false, None, None, 1, RULE_INVALID_LATEST),
            (Latest, false, Some(5), None, 0, RULE_NO_LOG_END),
        ];
        for &(policy, to_zero, committed, log_end, lag, rule) in cases {
            let spec = KafkaSpec {
                offset_reset_policy: policy,
                scale_to_zero_on_invalid_offset: to_zero,
                allow_idle_consumers: true,
                ..base()
            };
            let report = evaluate(
                &spec,
                &[part(0, committed, log_end)],
                &mut PreviousOffsets::new(),
            )
            .unwrap();
            let case =
                format!("{policy:?} toZero={to_zero} committed={committed:?} logEnd={log_end:?}");
            assert_eq!(report.partitions[0].lag, lag, "{case}");
            assert_eq!(report.partitions[0].lag_with_persistent, lag, "{case}");
            assert_eq!(report.partitions[0].rule, rule, "{case}");
            assert_eq!((report.total_lag, report.value), (lag, lag), "{case}");
        }
    }

    /// (partitions as (committed, log-end), allowIdleConsumers, limitToPartitionsWithLag, lagThreshold)
    /// -> (total, value, cap replicas, applied).
    #[test]
    fn the_cap_keeps_replicas_at_or_below_the_partitions() {
        type Case = (
            &'static [(i64, i64)],
            bool,
            bool,
            i64,
            i64,
            i64,
            Option<u64>,
            bool,
        );
        let cases: &[Case] = &[
            // 4 partitions, lag 100 in total, threshold 10: 10 replicas wanted, capped at 4 -> 40.
            (
                &[(0, 25), (0, 25), (0, 25), (0, 25)],
                false,
                false,
                10,
                100,
                40,
                Some(4),
                true,
            ),
            // Exactly at the cap: not lowered.
            (
                &[(0, 10), (0, 10), (0, 10), (0, 10)],
                false,
                false,
                10,
                40,
                40,
                Some(4),
                false,
            ),
            // 41 would make ceil(41/10) = 5 > 4 replicas (KEDA's integer test lets 41..49 through; see the module doc).
            (
                &[(0, 11), (0, 10), (0, 10), (0, 10)],
                false,
                false,
                10,
                41,
                40,
                Some(4),
                true,
            ),
            (
                &[(0, 19), (0, 10), (0, 10), (0, 10)],
                false,
                false,
                10,
                49,
                40,
                Some(4),
                true,
            ),
            // allowIdleConsumers: no cap.
            (
                &[(0, 25), (0, 25), (0, 25), (0, 25)],
                true,
                false,
                10,
                100,
                100,
                None,
                false,
            ),
            // limitToPartitionsWithLag: 2 partitions with lag -> at most 2 replicas.
            (
                &[(0, 50), (0, 50), (10, 10), (7, 7)],
                false,
                true,
                10,
                100,
                20,
                Some(2),
                true,
            ),
            (
                &[(0, 5), (0, 5), (10, 10), (7, 7)],
                false,
                true,
                10,
                10,
                10,
                Some(2),
                false,
            ),
            // No partition with lag: the cap is 0.
            (&[(10, 10), (7, 7)], false, true, 10, 0, 0, Some(0), false),
            // A larger threshold.
            (
                &[(0, 1000), (0, 1000)],
                false,
                false,
                300,
                2000,
                600,
                Some(2),
                true,
            ),
        ];
        for &(parts, idle, limit, threshold, total, value, cap, applied) in cases {
            let spec = KafkaSpec {
                lag_threshold: threshold,
                allow_idle_consumers: idle,
                limit_to_partitions_with_lag: limit,
                ..base()
            };
            let offsets: Vec<_> = parts
                .iter()
                .enumerate()
                .map(|(i, (c, e))| part(i as i32, Some(*c), Some(*e)))
                .collect();
            let report = evaluate(&spec, &offsets, &mut PreviousOffsets::new()).unwrap();
            let case = format!("{parts:?} idle={idle} limit={limit} threshold={threshold}");
            assert_eq!(report.total_lag, total, "{case}");
            assert_eq!(report.value, value, "{case}");
            assert_eq!(report.cap_replicas, cap, "{case}");
            assert_eq!(report.cap_applied, applied, "{case}");
            assert_eq!(
                report.cap_value,
                cap.map(|c| c as i64 * threshold),
                "{case}"
            );
            if let Some(cap) = cap {
                assert!(
                    (report.value as f64 / threshold as f64).ceil() <= cap as f64,
                    "{case}"
                );
            }
            // Activation never sees the cap.
            assert_eq!(report.activation_value(), total, "{case}");
        }
    }

    #[test]
    fn persistent_lag_is_excluded_from_the_value_but_not_from_activation() {
        let spec = KafkaSpec {
            exclude_persistent_lag: true,
            ..base()
        };
        let mut previous = PreviousOffsets::new();
        // Poll 1: first sight of each partition, everything counts and is recorded.
        let poll1 = [
            part(0, Some(10), Some(30)),
            part(1, Some(5), Some(5)),
            part(2, None, Some(9)),
        ];
        let r1 = evaluate(&spec, &poll1, &mut previous).unwrap();
        assert_eq!(
            r1.partitions
                .iter()
                .map(|p| (p.lag, p.rule))
                .collect::<Vec<_>>(),
            vec![
                (20, RULE_FIRST_SEEN),
                (0, RULE_FIRST_SEEN),
                (1, RULE_INVALID_LATEST)
            ]
        );
        assert_eq!(previous.len(), 2, "an invalid offset is not recorded");
        // Poll 2: partition 0 stuck at 10 with lag 25 -> excluded; partition 1 moved.
        let poll2 = [
            part(0, Some(10), Some(35)),
            part(1, Some(8), Some(12)),
            part(2, None, Some(9)),
        ];
        let r2 = evaluate(&spec, &poll2, &mut previous).unwrap();
        assert_eq!(
            r2.partitions
                .iter()
                .map(|p| (p.lag, p.lag_with_persistent, p.rule))
                .collect::<Vec<_>>(),
            vec![
                (0, 25, RULE_PERSISTENT),
                (4, 4, RULE_LAG),
                (1, 1, RULE_INVALID_LATEST)
            ]
        );
        assert_eq!(r2.partitions[0].previous_committed, Some(10));
        assert_eq!(
            (r2.total_lag, r2.total_lag_with_persistent, r2.value),
            (5, 30, 5)
        );
        assert_eq!(
            r2.partitions_with_lag, 2,
            "the excluded partition has no lag for the cap"
        );
        // Poll 3: partition 0 moves again -> counted.
        let poll3 = [part(0, Some(11), Some(35)), part(1, Some(8), Some(12))];
        let r3 = evaluate(&spec, &poll3, &mut previous).unwrap();
        assert_eq!(
            r3.partitions
                .iter()
                .map(|p| (p.lag, p.rule))
                .collect::<Vec<_>>(),
            vec![(24, RULE_LAG), (0, RULE_PERSISTENT)]
        );
        // Without the option nothing is remembered and nothing excluded.
        let mut untouched = PreviousOffsets::new();
        let plain = evaluate(&base(), &poll2, &mut untouched).unwrap();
        assert_eq!(plain.total_lag, 30);
        assert!(untouched.is_empty());
    }

    #[test]
    fn a_stuck_partition_at_zero_lag_is_not_called_excluded() {
        let spec = KafkaSpec {
            exclude_persistent_lag: true,
            ..base()
        };
        let mut previous = PreviousOffsets::new();
        evaluate(&spec, &[part(0, Some(7), Some(7))], &mut previous).unwrap();
        let r = evaluate(&spec, &[part(0, Some(7), Some(7))], &mut previous).unwrap();
        assert_eq!((r.partitions[0].lag, r.partitions[0].rule), (0, RULE_LAG));
    }

    #[test]
    fn partition_limitation_counts_only_the_listed_partitions() {
        let spec = KafkaSpec {
            partition_limitation: Some(vec![1, 3]),
            ..base()
        };
        let offsets: Vec<_> = (0..4)
            .map(|p| part(p, Some(0), Some(100 + i64::from(p))))
            .collect();
        let r = evaluate(&spec, &offsets, &mut PreviousOffsets::new()).unwrap();
        assert_eq!(
            r.partitions
                .iter()
                .map(|p| p.offsets.partition)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(r.total_lag, 101 + 103);
        // The cap is the limited partition count: 2 x 10.
        assert_eq!((r.cap_replicas, r.value), (Some(2), 20));
        let none_left = KafkaSpec {
            partition_limitation: Some(vec![9]),
            ..base()
        };
        let err = evaluate(&none_left, &offsets, &mut PreviousOffsets::new()).unwrap_err();
        assert!(err.contains("partitionLimitation"), "{err}");
    }

    #[test]
    fn partitions_are_reported_in_order_and_explained() {
        let offsets = [
            PartitionOffsets {
                topic: "b".into(),
                partition: 0,
                committed: Some(1),
                log_end: Some(2),
            },
            part(1, None, Some(4)),
            part(0, Some(3), Some(3)),
        ];
        let r = evaluate(&base(), &offsets, &mut PreviousOffsets::new()).unwrap();
        let explain = r.explain("g", None);
        assert_eq!(
            explain
                .partition_lags
                .iter()
                .map(|p| (p.topic.as_str(), p.partition, p.lag))
                .collect::<Vec<_>>(),
            vec![("b", 0, 1), ("t", 0, 0), ("t", 1, 1)]
        );
        assert_eq!(explain.partition_lags[2].rule, RULE_INVALID_LATEST);
        assert_eq!(
            (
                explain.partitions,
                explain.partitions_with_lag,
                explain.total_lag
            ),
            (3, 2, 2)
        );
        assert_eq!(
            (explain.cap_replicas, explain.cap_value, explain.cap_applied),
            (Some(3), Some(30), false)
        );
    }
}
