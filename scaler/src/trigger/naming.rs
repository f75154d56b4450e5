//! The trigger's external metric name (`metricName`, the name KEDA and the HPA know it by): given, or derived from what
//! the trigger measures so that it is readable, unique per measurement and unchanged when only the target changes.

use super::{TriggerError, TriggerKind, TriggerSpec};

impl TriggerSpec {
    /// `<kind>[-p<quantile>][-<route>]-<hash>`: readable, unique per distinct measurement (source, selector, route, window,
    /// quantile, query), and unchanged when only the target changes.
    pub(crate) fn default_metric_name(&self) -> String {
        if let TriggerKind::Kafka(kafka) = &self.kind {
            return self.kafka_metric_name(kafka);
        }
        let mut name = self.kind.name().replace('_', "-");
        if let TriggerKind::Latency { quantile } = self.kind {
            name.push_str(&format!("-p{}", format_quantile(quantile)));
        }
        if let Some(route) = &self.route {
            let slug: String = route
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let slug = slug.trim_matches('-');
            if !slug.is_empty() {
                name.push('-');
                name.push_str(slug);
            }
        }
        let identity = format!(
            "{}|{}|{:?}|{}|{}|{:?}",
            self.source.id(),
            self.selector
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(","),
            self.route,
            self.window.as_secs(),
            match &self.kind {
                TriggerKind::Query { query } => query.as_str(),
                _ => "",
            },
            match self.kind {
                TriggerKind::Latency { quantile } => quantile,
                _ => 0.0,
            },
        );
        format!("{name}-{:06x}", fnv1a(identity.as_bytes()) & 0xff_ffff)
    }
}

impl TriggerSpec {
    /// `kafka-<topic>-<hash>` or `kafka-<group>-topics-<hash>` (KEDA's own names plus the hash): the hash covers the
    /// source and every rule that changes the value, but not lagThreshold or activationLagThreshold (the targets).
    fn kafka_metric_name(&self, kafka: &super::KafkaSpec) -> String {
        let readable = match &self.source {
            super::SourceSpec::Kafka {
                consumer_group,
                topic,
                ..
            } => match topic {
                Some(topic) => topic.clone(),
                None => format!("{consumer_group}-topics"),
            },
            _ => String::new(),
        };
        let mut slug: String = readable
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        // 100 characters at most: "kafka-" + slug + "-" + 6 hex.
        slug.truncate(80);
        let slug = slug.trim_matches('-');
        let identity = format!(
            "{}|{}|{}|{}|{}|{}|{:?}",
            self.source.id(),
            kafka.offset_reset_policy.name(),
            kafka.allow_idle_consumers,
            kafka.scale_to_zero_on_invalid_offset,
            kafka.exclude_persistent_lag,
            kafka.limit_to_partitions_with_lag,
            kafka.partition_limitation,
        );
        let hash = fnv1a(identity.as_bytes()) & 0xff_ffff;
        if slug.is_empty() {
            format!("kafka-{hash:06x}")
        } else {
            format!("kafka-{slug}-{hash:06x}")
        }
    }
}

fn format_quantile(quantile: f64) -> String {
    let percent = quantile * 100.0;
    if (percent - percent.round()).abs() < 1e-9 {
        format!("{}", percent.round() as i64)
    } else {
        format!("{percent}").replace('.', "")
    }
}

/// FNV-1a 64: a tiny hash whose output never changes between Rust releases (std's hasher may), so metric names are stable.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub(crate) fn parse_metric_name(raw: &str) -> Result<String, TriggerError> {
    let ok = !raw.is_empty()
        && raw.len() <= 100
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(TriggerError::invalid(
            "metricName",
            raw,
            "not a valid external metric name",
            "1-100 characters of a-z, 0-9 and '-', starting with a letter",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::metadata::tests::meta;
    use super::*;

    #[test]
    fn metric_name_is_stable_across_targets_and_unique_across_measurements() {
        let a = TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate"), ("target", "5")]))
            .unwrap();
        let b = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("target", "50"),
            ("activationTarget", "3"),
        ]))
        .unwrap();
        let c = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("selector", "method=\"GET\""),
        ]))
        .unwrap();
        assert_eq!(a.metric_name, b.metric_name);
        assert_ne!(a.metric_name, c.metric_name);
        let named = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("metricName", "my-rps"),
        ]))
        .unwrap();
        assert_eq!(named.metric_name, "my-rps");
    }
}
