//! The trigger kinds, one enum: the value of the `trigger` metadata key, the keys each kind accepts, and the target
//! each kind defaults to. Parsing matches the string once, here; everything after works on [`Kind`].

use std::time::Duration;

/// The value of the `trigger` metadata key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RequestRate,
    Latency,
    AllocatorPressure,
    Backlog,
    Query,
    Kafka,
}

/// The trigger kinds accepted in `trigger`, for messages.
pub const TRIGGER_KINDS: &str = "request_rate, latency, allocator_pressure, backlog, query, kafka";

/// Keys every kind accepts (minus the exceptions in [`Kind::allowed_keys`]).
const COMMON_KEYS: [&str; 10] = [
    "trigger",
    "target",
    "activationTarget",
    "serverAddress",
    "targets",
    "metricName",
    "metricType",
    "ignoreNullValues",
    "selector",
    "unsafeSsl",
];

/// Default rate / quantile window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::RequestRate,
        Kind::Latency,
        Kind::AllocatorPressure,
        Kind::Backlog,
        Kind::Query,
        Kind::Kafka,
    ];

    /// The `trigger` metadata value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestRate => "request_rate",
            Kind::Latency => "latency",
            Kind::AllocatorPressure => "allocator_pressure",
            Kind::Backlog => "backlog",
            Kind::Query => "query",
            Kind::Kafka => "kafka",
        }
    }

    /// The kind a `trigger` value names.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The metadata keys this kind accepts.
    pub fn allowed_keys(self) -> Vec<&'static str> {
        if self == Kind::Kafka {
            // KEDA's kafka keys instead of the consumer-signal ones: lagThreshold is the target, the brokers the source.
            let mut keys = vec!["trigger", "metricName", "metricType"];
            keys.extend(super::kafka::KAFKA_KEYS);
            return keys;
        }
        let mut keys: Vec<&'static str> = COMMON_KEYS.to_vec();
        match self {
            Kind::RequestRate => keys.extend(["route", "window"]),
            Kind::Latency => keys.extend(["route", "window", "quantile"]),
            Kind::AllocatorPressure => keys.extend(["window"]),
            Kind::Backlog | Kind::Kafka => {}
            Kind::Query => {
                // A user's PromQL carries its own matchers and needs Prometheus.
                keys.retain(|k| *k != "selector" && *k != "targets");
                keys.push("query");
            }
        }
        keys
    }

    /// The target used when `target` is absent; None for kinds with no natural default.
    pub fn default_target(self) -> Option<f64> {
        match self {
            Kind::RequestRate => Some(5.0),
            Kind::Latency => Some(2.0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_is_listed() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
            assert!(TRIGGER_KINDS.split(", ").any(|k| k == kind.name()));
            assert!(kind.allowed_keys().contains(&"trigger"));
        }
        assert_eq!(TRIGGER_KINDS.split(", ").count(), Kind::ALL.len());
        assert_eq!(Kind::parse("cpu"), None);
    }
}
