//! What a trigger measures in the consumer's series: the PromQL it runs on a Prometheus source, the series filter the
//! direct source applies instead, and the one-line description `/explain` shows. Metric and label names come from
//! `contract` (the consumer exports them from the same definitions).

use contract::metrics::consumer::{
    ALLOCATED_BYTES_TOTAL, BUILD_INFO, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL,
    JOBS_QUEUED, JOBS_RUNNING,
};
use contract::metrics::{MetricDef, labels};
use contract::routes::PROBES;

use super::selector::escape_label_value;
use super::{SourceSpec, TriggerKind, TriggerSpec};

/// The `_bucket` series of a histogram.
pub fn bucket_series(histogram: &MetricDef) -> String {
    format!("{}_bucket", histogram.name)
}

/// The series summed by the backlog trigger.
pub const BACKLOG_SERIES: [&MetricDef; 2] = [&JOBS_QUEUED, &JOBS_RUNNING];

impl TriggerSpec {
    /// The label matchers of the consumer's request metrics for this trigger (route scoping plus `selector`).
    fn request_matchers(&self) -> Vec<String> {
        let mut matchers = Vec::new();
        match &self.route {
            Some(route) => matchers.push(format!(
                "{}=\"{}\"",
                labels::ROUTE,
                escape_label_value(route)
            )),
            None => matchers.push(format!("{}!~\"{}\"", labels::ROUTE, PROBES.join("|"))),
        }
        matchers.extend(self.selector.iter().map(|m| m.to_string()));
        matchers
    }

    fn selector_matchers(&self) -> Vec<String> {
        self.selector.iter().map(|m| m.to_string()).collect()
    }

    /// The PromQL that measures this trigger on a Prometheus source.
    pub fn promql(&self) -> String {
        let window = format!("{}s", self.window.as_secs());
        match &self.kind {
            TriggerKind::RequestRate => format!(
                "sum(rate({}{{{}}}[{window}]))",
                HTTP_REQUESTS_TOTAL.name,
                self.request_matchers().join(",")
            ),
            TriggerKind::Latency { quantile } => format!(
                "histogram_quantile({}, sum by ({}) (rate({}{{{}}}[{window}])))",
                quantile,
                labels::LE,
                bucket_series(&HTTP_REQUEST_DURATION_SECONDS),
                self.request_matchers().join(",")
            ),
            TriggerKind::AllocatorPressure => format!(
                "sum(rate({}{{{}}}[{window}]))",
                ALLOCATED_BYTES_TOTAL.name,
                self.selector_matchers().join(",")
            ),
            TriggerKind::Backlog => {
                let names: Vec<&str> = BACKLOG_SERIES.iter().map(|m| m.name).collect();
                let mut matchers = vec![format!("__name__=~\"{}\"", names.join("|"))];
                matchers.extend(self.selector_matchers());
                format!("sum({{{}}})", matchers.join(","))
            }
            TriggerKind::Query { query } => query.clone(),
            // Not PromQL: the Kafka poller reads offsets; this is what /explain shows for it.
            TriggerKind::Kafka(kafka) => self.kafka_description(kafka),
        }
    }

    fn kafka_description(&self, kafka: &super::KafkaSpec) -> String {
        let (group, topic) = match &self.source {
            SourceSpec::Kafka {
                consumer_group,
                topic,
                ..
            } => (consumer_group.as_str(), topic.as_deref()),
            _ => ("", None),
        };
        let mut rules = vec![format!(
            "offsetResetPolicy={}",
            kafka.offset_reset_policy.name()
        )];
        for (flag, name) in [
            (kafka.allow_idle_consumers, "allowIdleConsumers"),
            (
                kafka.scale_to_zero_on_invalid_offset,
                "scaleToZeroOnInvalidOffset",
            ),
            (kafka.exclude_persistent_lag, "excludePersistentLag"),
            (
                kafka.limit_to_partitions_with_lag,
                "limitToPartitionsWithLag",
            ),
        ] {
            if flag {
                rules.push(name.to_string());
            }
        }
        if let Some(ids) = &kafka.partition_limitation {
            rules.push(format!("partitions {ids:?}"));
        }
        format!(
            "sum over partitions of (log-end offset - committed offset of group {group}) on {}, KEDA's kafka rules ({})",
            topic
                .map(|t| format!("topic {t}"))
                .unwrap_or_else(|| "every topic the group has offsets for".into()),
            rules.join(", ")
        )
    }

    /// For Prometheus sources of the built-in triggers: counts the pods behind the signal (the consumer's build-info
    /// gauge is 1 per replica), so `/explain` can apply the HPA formula with the real replica count.
    pub fn replicas_promql(&self) -> Option<String> {
        match self.kind {
            TriggerKind::Query { .. } | TriggerKind::Kafka(_) => None,
            _ => Some(format!(
                "count({}{{{}}})",
                BUILD_INFO.name,
                self.selector_matchers().join(",")
            )),
        }
    }

    /// Whether a series of the consumer's request metrics counts for this trigger (direct source).
    pub fn request_series_matches(&self, series_labels: &[(String, String)]) -> bool {
        let route = series_labels
            .iter()
            .find(|(name, _)| name == labels::ROUTE)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let route_ok = match &self.route {
            Some(wanted) => route == wanted,
            None => !PROBES.contains(&route),
        };
        route_ok && self.selector_matches(series_labels)
    }

    /// Whether a series passes the `selector` matchers (direct source).
    pub fn selector_matches(&self, series_labels: &[(String, String)]) -> bool {
        self.selector.iter().all(|m| m.matches(series_labels))
    }

    /// A one-line description of how the value is computed, for `/explain`.
    pub fn describe(&self) -> String {
        let window = self.window.as_secs();
        match &self.source {
            SourceSpec::Direct { .. } => match &self.kind {
                TriggerKind::RequestRate => format!(
                    "sum over pods of increase({}{{{}}}) / elapsed, over {window}s",
                    HTTP_REQUESTS_TOTAL.name,
                    self.request_matchers().join(","),
                ),
                TriggerKind::Latency { quantile } => format!(
                    "quantile {quantile} of the increase of {}{{{}}} summed over pods, over {window}s",
                    bucket_series(&HTTP_REQUEST_DURATION_SECONDS),
                    self.request_matchers().join(","),
                ),
                TriggerKind::AllocatorPressure => format!(
                    "sum over pods of increase({}{{{}}}) / elapsed, over {window}s",
                    ALLOCATED_BYTES_TOTAL.name,
                    self.selector_matchers().join(","),
                ),
                TriggerKind::Backlog => format!(
                    "sum over pods of {} + {}{{{}}}",
                    JOBS_QUEUED.name,
                    JOBS_RUNNING.name,
                    self.selector_matchers().join(",")
                ),
                TriggerKind::Query { query } => query.clone(),
                TriggerKind::Kafka(_) => self.promql(),
            },
            _ => self.promql(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::metadata::tests::meta;
    use super::super::{DirectTargets, MetricType};
    use super::*;

    #[test]
    fn request_rate_defaults_and_promql_exclude_probe_routes() {
        let spec = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "request_rate"),
            ("serverAddress", "http://prometheus:9090/"),
        ]))
        .unwrap();
        assert_eq!(spec.target, 5.0);
        assert_eq!(spec.activation_target, 0.0);
        assert_eq!(spec.window, Duration::from_secs(60));
        assert_eq!(spec.metric_type, MetricType::AverageValue);
        assert_eq!(
            spec.source,
            SourceSpec::Prometheus {
                url: "http://prometheus:9090".into()
            }
        );
        assert_eq!(
            spec.promql(),
            format!(
                "sum(rate({}{{route!~\"/health|/ready|/metrics\"}}[60s]))",
                HTTP_REQUESTS_TOTAL.name
            )
        );
        assert!(spec.metric_name.starts_with("request-rate-"));
    }

    #[test]
    fn latency_uses_quantile_route_selector_and_value_type() {
        let spec = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "latency"),
            ("quantile", "0.99"),
            ("route", "/load/cpu"),
            ("window", "30s"),
            ("selector", "namespace=\"autoscaling-lab\""),
            ("targets", "consumer-headless.lab.svc"),
        ]))
        .unwrap();
        assert_eq!(spec.target, 2.0);
        assert_eq!(spec.metric_type, MetricType::Value);
        assert!(
            spec.metric_name.starts_with("latency-p99-load-cpu-"),
            "{}",
            spec.metric_name
        );
        assert_eq!(
            spec.source,
            SourceSpec::Direct {
                targets: DirectTargets::Dns {
                    host: "consumer-headless.lab.svc".into(),
                    port: 8080
                }
            }
        );
        let prom = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "latency"),
            ("quantile", "0.99"),
            ("route", "/load/cpu"),
            ("window", "30s"),
            ("selector", "namespace=\"autoscaling-lab\""),
        ]))
        .unwrap();
        assert_eq!(
            prom.promql(),
            format!(
                "histogram_quantile(0.99, sum by (le) (rate({}_bucket{{route=\"/load/cpu\",namespace=\"autoscaling-lab\"}}[30s])))",
                HTTP_REQUEST_DURATION_SECONDS.name
            )
        );
    }

    #[test]
    fn backlog_and_allocator_need_a_target() {
        let err = TriggerSpec::from_metadata(&meta(&[("trigger", "backlog")])).unwrap_err();
        assert_eq!(err.key(), "target");
        let spec =
            TriggerSpec::from_metadata(&meta(&[("trigger", "backlog"), ("target", "10")])).unwrap();
        assert_eq!(
            spec.promql(),
            format!(
                "sum({{__name__=~\"{}|{}\"}})",
                JOBS_QUEUED.name, JOBS_RUNNING.name
            )
        );
        let alloc = TriggerSpec::from_metadata(&meta(&[
            ("trigger", "allocator_pressure"),
            ("target", "50e6"),
        ]))
        .unwrap();
        assert_eq!(alloc.target, 50e6);
        assert_eq!(
            alloc.promql(),
            format!("sum(rate({}{{}}[60s]))", ALLOCATED_BYTES_TOTAL.name)
        );
    }

    #[test]
    fn direct_request_filter_excludes_probes_unless_route_given() {
        let spec = TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate")])).unwrap();
        let labels = |route: &str| vec![("route".to_string(), route.to_string())];
        assert!(spec.request_series_matches(&labels("/load/cpu")));
        assert!(!spec.request_series_matches(&labels("/metrics")));
        let scoped =
            TriggerSpec::from_metadata(&meta(&[("trigger", "request_rate"), ("route", "/health")]))
                .unwrap();
        assert!(scoped.request_series_matches(&labels("/health")));
        assert!(!scoped.request_series_matches(&labels("/load/cpu")));
    }
}
