//! The `kafka` trigger's metadata, with the names, defaults and checks of KEDA's built-in `kafka` scaler
//! (`pkg/scalers/kafka_scaler.go`, `parseKafkaMetadata`; documented at keda.sh/docs/latest/scalers/apache-kafka), so one
//! ScaledObject reads the same whether its trigger is `type: kafka` or `type: external-push` with `trigger: kafka`.
//! The lag rules themselves live in `crate::kafka::lag`.

use super::{SourceSpec, TriggerError};

/// KEDA's `defaultKafkaLagThreshold`.
pub const DEFAULT_LAG_THRESHOLD: i64 = 10;
/// KEDA's `defaultKafkaActivationLagThreshold`.
pub const DEFAULT_ACTIVATION_LAG_THRESHOLD: i64 = 0;

/// The metadata keys of the `kafka` trigger (besides `trigger`, `metricName` and `metricType`). `version` is KEDA's
/// sarama protocol version: accepted and ignored, since librdkafka negotiates API versions with the broker.
pub const KAFKA_KEYS: [&str; 12] = [
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "partitionLimitation",
    "version",
];

/// Where a consumer starts when its group has no committed offset (`auto.offset.reset`); decides the lag KEDA counts
/// for such a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetResetPolicy {
    Latest,
    Earliest,
}

impl OffsetResetPolicy {
    pub fn name(self) -> &'static str {
        match self {
            OffsetResetPolicy::Latest => "latest",
            OffsetResetPolicy::Earliest => "earliest",
        }
    }
}

/// The `kafka` trigger's rules (what KEDA's `kafkaMetadata` holds besides the connection).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaSpec {
    /// Per-replica lag target (`lagThreshold`, > 0): the trigger's `target`.
    pub lag_threshold: i64,
    /// Active when the lag (persistent lag included) is strictly above it (`activationLagThreshold`, >= 0).
    pub activation_lag_threshold: i64,
    pub offset_reset_policy: OffsetResetPolicy,
    pub allow_idle_consumers: bool,
    pub scale_to_zero_on_invalid_offset: bool,
    pub exclude_persistent_lag: bool,
    pub limit_to_partitions_with_lag: bool,
    /// Only these partition ids count (sorted, unique). None: all. KEDA ignores the key when no `topic` is given, and
    /// so does this scaler.
    pub partition_limitation: Option<Vec<i32>>,
}

/// The parsed trigger: its rules and its source (one poller per bootstrapServers, consumerGroup and topic).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedKafka {
    pub spec: KafkaSpec,
    pub source: SourceSpec,
}

/// Parses the `kafka` trigger's keys; `get` gives a key's trimmed value (after `<key>FromEnv` resolution).
pub fn parse_kafka<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<ParsedKafka, TriggerError> {
    let bootstrap_servers = parse_bootstrap_servers(get("bootstrapServers"))?;
    let consumer_group = match get("consumerGroup") {
        Some(group) if !group.is_empty() => group.to_string(),
        _ => {
            return Err(TriggerError::Missing {
                key: "consumerGroup".into(),
                hint: "the consumer group whose committed offsets give the lag, e.g. consumerGroup: my-group".into(),
            });
        }
    };
    let topic = get("topic")
        .filter(|t| !t.is_empty())
        .map(parse_topic)
        .transpose()?;
    let lag_threshold = match get("lagThreshold") {
        Some(raw) => parse_int(
            "lagThreshold",
            raw,
            1,
            "a whole number greater than 0, e.g. 10 (default 10)",
        )?,
        None => DEFAULT_LAG_THRESHOLD,
    };
    let activation_lag_threshold = match get("activationLagThreshold") {
        Some(raw) => parse_int(
            "activationLagThreshold",
            raw,
            0,
            "a whole number of 0 or more (default 0): active when the lag is strictly above it",
        )?,
        None => DEFAULT_ACTIVATION_LAG_THRESHOLD,
    };
    let offset_reset_policy = match get("offsetResetPolicy") {
        None | Some("") | Some("latest") => OffsetResetPolicy::Latest,
        Some("earliest") => OffsetResetPolicy::Earliest,
        Some(other) => {
            return Err(TriggerError::invalid(
                "offsetResetPolicy",
                other,
                "unknown offset reset policy",
                "latest, earliest",
            ));
        }
    };
    let allow_idle_consumers =
        super::metadata::parse_bool("allowIdleConsumers", get("allowIdleConsumers"), false)?;
    let scale_to_zero_on_invalid_offset = super::metadata::parse_bool(
        "scaleToZeroOnInvalidOffset",
        get("scaleToZeroOnInvalidOffset"),
        false,
    )?;
    let exclude_persistent_lag =
        super::metadata::parse_bool("excludePersistentLag", get("excludePersistentLag"), false)?;
    let limit_to_partitions_with_lag = super::metadata::parse_bool(
        "limitToPartitionsWithLag",
        get("limitToPartitionsWithLag"),
        false,
    )?;
    // KEDA: "allowIdleConsumers and limitToPartitionsWithLag cannot be set simultaneously", "topic must be specified
    // when using limitToPartitionsWithLag".
    if limit_to_partitions_with_lag && allow_idle_consumers {
        return Err(TriggerError::invalid(
            "limitToPartitionsWithLag",
            "true",
            "cannot be true together with allowIdleConsumers: true (as in KEDA)",
            "false, or allowIdleConsumers: false",
        ));
    }
    if limit_to_partitions_with_lag && topic.is_none() {
        return Err(TriggerError::invalid(
            "limitToPartitionsWithLag",
            "true",
            "needs a `topic` (as in KEDA)",
            "false, or give `topic`",
        ));
    }
    let partition_limitation = match get("partitionLimitation").filter(|p| !p.is_empty()) {
        Some(raw) => {
            let parsed = parse_partition_limitation(raw)?;
            topic.is_some().then_some(parsed)
        }
        None => None,
    };
    Ok(ParsedKafka {
        spec: KafkaSpec {
            lag_threshold,
            activation_lag_threshold,
            offset_reset_policy,
            allow_idle_consumers,
            scale_to_zero_on_invalid_offset,
            exclude_persistent_lag,
            limit_to_partitions_with_lag,
            partition_limitation,
        },
        source: SourceSpec::Kafka {
            bootstrap_servers,
            consumer_group,
            topic,
        },
    })
}

fn parse_bootstrap_servers(raw: Option<&str>) -> Result<String, TriggerError> {
    const ALLOWED: &str =
        "a comma list of host:port, e.g. my-cluster-kafka-bootstrap.kafka.svc:9092";
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Err(TriggerError::Missing {
            key: "bootstrapServers".into(),
            hint: format!("the brokers to read offsets from: {ALLOWED}"),
        });
    };
    let mut servers = Vec::new();
    for part in raw.split(',').map(str::trim) {
        let valid = part.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && host.len() <= 253
                && host.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '[' | ']' | ':')
                })
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(TriggerError::invalid(
                "bootstrapServers",
                raw,
                format!("`{part}` is not host:port"),
                ALLOWED,
            ));
        }
        servers.push(part.to_string());
    }
    Ok(servers.join(","))
}

/// Kafka's topic name rule: 1-249 characters of `a-zA-Z0-9._-`, not `.` or `..`.
fn parse_topic(raw: &str) -> Result<String, TriggerError> {
    let valid = raw.len() <= 249
        && raw != "."
        && raw != ".."
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(raw.to_string())
    } else {
        Err(TriggerError::invalid(
            "topic",
            raw,
            "not a Kafka topic name",
            "1-249 characters of a-z, A-Z, 0-9, '.', '_', '-' (omit it for every topic the group has offsets for)",
        ))
    }
}

fn parse_int(key: &str, raw: &str, min: i64, allowed: &str) -> Result<i64, TriggerError> {
    match raw.parse::<i64>() {
        Ok(value) if value >= min => Ok(value),
        Ok(_) => Err(TriggerError::invalid(key, raw, "out of range", allowed)),
        Err(_) => Err(TriggerError::invalid(
            key,
            raw,
            "not a whole number",
            allowed,
        )),
    }
}

/// KEDA's `partitionLimitation` syntax (`kedautil.ParseInt32List`): a comma list of partition ids and inclusive
/// ranges, e.g. `1,2,10-12`. Returns the ids sorted and unique.
pub fn parse_partition_limitation(raw: &str) -> Result<Vec<i32>, TriggerError> {
    const ALLOWED: &str = "a comma list of partition ids and ranges, e.g. 1,2,10-12";
    // A range of a million partitions is no real topic; the bound keeps a typo from allocating gigabytes.
    const MAX_IDS: usize = 100_000;
    let bad = |reason: String| TriggerError::invalid("partitionLimitation", raw, reason, ALLOWED);
    let id = |s: &str| -> Result<i32, TriggerError> {
        s.trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| {
                bad(format!(
                    "`{}` is not a partition id (a whole number of 0 or more)",
                    s.trim()
                ))
            })
    };
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (id(from)?, id(to)?);
                if from > to {
                    return Err(bad(format!("range `{part}` runs backwards")));
                }
                if (to - from) as usize >= MAX_IDS || ids.len() + (to - from) as usize >= MAX_IDS {
                    return Err(bad(format!(
                        "range `{part}` names more than {MAX_IDS} partitions"
                    )));
                }
                ids.extend(from..=to);
            }
            None => ids.push(id(part)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerSpec;
    use crate::trigger::metadata::tests::meta;

    const BASE: [(&str, &str); 3] = [
        ("trigger", "kafka"),
        ("bootstrapServers", "kafka-0:9092, kafka-1:9092"),
        ("consumerGroup", "workers"),
    ];

    fn parse(extra: &[(&str, &str)]) -> Result<TriggerSpec, TriggerError> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        TriggerSpec::from_metadata(&meta(&pairs))
    }

    fn kafka(spec: &TriggerSpec) -> &KafkaSpec {
        match &spec.kind {
            crate::trigger::TriggerKind::Kafka(kafka) => kafka,
            other => panic!("not a kafka trigger: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_kedas() {
        let spec = parse(&[("topic", "orders")]).unwrap();
        let k = kafka(&spec);
        assert_eq!(k.lag_threshold, 10);
        assert_eq!(spec.target, 10.0);
        assert_eq!(k.activation_lag_threshold, 0);
        assert_eq!(spec.activation_target, 0.0);
        assert_eq!(k.offset_reset_policy, OffsetResetPolicy::Latest);
        assert!(!k.allow_idle_consumers);
        assert!(!k.scale_to_zero_on_invalid_offset);
        assert!(!k.exclude_persistent_lag);
        assert!(!k.limit_to_partitions_with_lag);
        assert_eq!(k.partition_limitation, None);
        assert_eq!(spec.metric_type, crate::trigger::MetricType::AverageValue);
        assert_eq!(
            spec.source,
            SourceSpec::Kafka {
                bootstrap_servers: "kafka-0:9092,kafka-1:9092".into(),
                consumer_group: "workers".into(),
                topic: Some("orders".into()),
            }
        );
        assert!(
            spec.metric_name.starts_with("kafka-orders-"),
            "{}",
            spec.metric_name
        );
        let all_topics = parse(&[]).unwrap();
        assert!(
            all_topics.metric_name.starts_with("kafka-workers-topics-"),
            "{}",
            all_topics.metric_name
        );
    }

    #[test]
    fn every_key_is_read() {
        let spec = parse(&[
            ("topic", "orders"),
            ("lagThreshold", "50"),
            ("activationLagThreshold", "5"),
            ("offsetResetPolicy", "earliest"),
            ("scaleToZeroOnInvalidOffset", "true"),
            ("excludePersistentLag", "TRUE"),
            ("limitToPartitionsWithLag", "true"),
            ("partitionLimitation", "1,2,10-12, 2"),
            ("version", "1.0.0"),
            ("metricType", "Value"),
            ("scalerAddress", "scaler:6000"),
        ])
        .unwrap();
        let k = kafka(&spec);
        assert_eq!((k.lag_threshold, spec.target), (50, 50.0));
        assert_eq!(
            (k.activation_lag_threshold, spec.activation_target),
            (5, 5.0)
        );
        assert_eq!(k.offset_reset_policy, OffsetResetPolicy::Earliest);
        assert!(
            k.scale_to_zero_on_invalid_offset
                && k.exclude_persistent_lag
                && k.limit_to_partitions_with_lag
        );
        assert_eq!(k.partition_limitation, Some(vec![1, 2, 10, 11, 12]));
        assert_eq!(spec.metric_type, crate::trigger::MetricType::Value);
        let idle = parse(&[("allowIdleConsumers", "true")]).unwrap();
        assert!(kafka(&idle).allow_idle_consumers);
        // KEDA ignores partitionLimitation without a topic.
        let ignored = parse(&[("partitionLimitation", "0-3")]).unwrap();
        assert_eq!(kafka(&ignored).partition_limitation, None);
    }

    #[test]
    fn bad_kafka_metadata_names_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("trigger", "kafka"), ("consumerGroup", "g")],
                "bootstrapServers",
            ),
            (
                &[("trigger", "kafka"), ("bootstrapServers", "k:9092")],
                "consumerGroup",
            ),
            (
                &[
                    ("trigger", "kafka"),
                    ("bootstrapServers", "k"),
                    ("consumerGroup", "g"),
                ],
                "bootstrapServers",
            ),
            (
                &[
                    ("trigger", "kafka"),
                    ("bootstrapServers", "k:0"),
                    ("consumerGroup", "g"),
                ],
                "bootstrapServers",
            ),
            (
                &[
                    ("trigger", "kafka"),
                    ("bootstrapServers", "k:9092,"),
                    ("consumerGroup", "g"),
                ],
                "bootstrapServers",
            ),
        ];
        for (pairs, key) in cases {
            let err = TriggerSpec::from_metadata(&meta(pairs))
                .expect_err(&format!("{pairs:?} should be refused"));
            assert_eq!(err.key(), *key, "{pairs:?}: {err}");
        }
        let with_base: &[(&[(&str, &str)], &str)] = &[
            (&[("topic", "a b")], "topic"),
            (&[("topic", "..")], "topic"),
            (&[("lagThreshold", "0")], "lagThreshold"),
            (&[("lagThreshold", "-5")], "lagThreshold"),
            (&[("lagThreshold", "2.5")], "lagThreshold"),
            (&[("lagThreshold", "ten")], "lagThreshold"),
            (
                &[("activationLagThreshold", "-1")],
                "activationLagThreshold",
            ),
            (&[("activationLagThreshold", "x")], "activationLagThreshold"),
            (&[("offsetResetPolicy", "oldest")], "offsetResetPolicy"),
            (&[("allowIdleConsumers", "yes")], "allowIdleConsumers"),
            (
                &[("scaleToZeroOnInvalidOffset", "1x")],
                "scaleToZeroOnInvalidOffset",
            ),
            (&[("excludePersistentLag", "maybe")], "excludePersistentLag"),
            (
                &[("limitToPartitionsWithLag", "on")],
                "limitToPartitionsWithLag",
            ),
            (
                &[
                    ("topic", "t"),
                    ("limitToPartitionsWithLag", "true"),
                    ("allowIdleConsumers", "true"),
                ],
                "limitToPartitionsWithLag",
            ),
            (
                &[("limitToPartitionsWithLag", "true")],
                "limitToPartitionsWithLag",
            ),
            (
                &[("topic", "t"), ("partitionLimitation", "1,x")],
                "partitionLimitation",
            ),
            (
                &[("topic", "t"), ("partitionLimitation", "5-2")],
                "partitionLimitation",
            ),
            (
                &[("topic", "t"), ("partitionLimitation", "-1")],
                "partitionLimitation",
            ),
            (
                &[("topic", "t"), ("partitionLimitation", "1,,2")],
                "partitionLimitation",
            ),
            (
                &[("topic", "t"), ("partitionLimitation", "0-2000000000")],
                "partitionLimitation",
            ),
            (&[("metricType", "Utilization")], "metricType"),
            (&[("metricName", "Bad_Name")], "metricName"),
            // The Prometheus/direct keys are not the kafka trigger's.
            (&[("target", "5")], "target"),
            (&[("serverAddress", "http://p:9090")], "serverAddress"),
            (&[("sasl", "plaintext")], "sasl"),
        ];
        for (extra, key) in with_base {
            let err = parse(extra).expect_err(&format!("{extra:?} should be refused"));
            assert_eq!(err.key(), *key, "{extra:?}: {err}");
            if let TriggerError::Invalid { allowed, .. } = &err {
                assert!(!allowed.is_empty(), "{err}");
            }
        }
        let message = parse(&[("offsetResetPolicy", "oldest")])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("offsetResetPolicy")
                && message.contains("\"oldest\"")
                && message.contains("latest, earliest"),
            "{message}"
        );
    }

    #[test]
    fn partition_limitation_takes_kedas_syntax() {
        assert_eq!(
            parse_partition_limitation("1,2,10-12").unwrap(),
            vec![1, 2, 10, 11, 12]
        );
        assert_eq!(
            parse_partition_limitation(" 3 , 0-1 ,3").unwrap(),
            vec![0, 1, 3]
        );
        assert_eq!(parse_partition_limitation("7-7").unwrap(), vec![7]);
        for bad in ["", "a", "1-", "-", "2-1", "1.5", "1;2"] {
            assert!(parse_partition_limitation(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metric_name_follows_the_measurement_not_the_thresholds() {
        let a = parse(&[("topic", "orders"), ("lagThreshold", "5")]).unwrap();
        let b = parse(&[
            ("topic", "orders"),
            ("lagThreshold", "50"),
            ("activationLagThreshold", "3"),
        ])
        .unwrap();
        assert_eq!(a.metric_name, b.metric_name);
        let other_group = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "kafka"),
            ("bootstrapServers", "kafka-0:9092,kafka-1:9092"),
            ("consumerGroup", "other"),
            ("topic", "orders"),
        ]))
        .unwrap();
        assert_ne!(a.metric_name, other_group.metric_name);
        let excluding = parse(&[("topic", "orders"), ("excludePersistentLag", "true")]).unwrap();
        assert_ne!(a.metric_name, excluding.metric_name);
    }
}
