//! The Kafka load's messages, written once: what `generator produce` sends (the seed's format), what the consumer's
//! Kafka worker reports after processing each one (so `generator verify` checks processing, not only delivery), and the
//! names they travel under.

use serde::{Deserialize, Serialize};

/// Suffix of the topic the consumer's Kafka worker reports processed messages to: `<topic>.processed`.
pub const PROCESSED_TOPIC_SUFFIX: &str = ".processed";

/// The topic processed-message reports for `topic` go to.
pub fn processed_topic(topic: &str) -> String {
    format!("{topic}{PROCESSED_TOPIC_SUFFIX}")
}

/// One load message, as the seed's Kafka load tester defines it:
/// `{"id","timestamp","sequence","payload","metadata":{"producer","test_run"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `<producer>-<sequence>`: unique within a test run.
    pub id: String,
    /// When the message was *scheduled* to be sent (RFC 3339, UTC, milliseconds): end-to-end latency is measured from
    /// it, so a stalled producer or broker shows in the consumer's figures.
    pub timestamp: String,
    /// 0, 1, 2, ... per producer within a test run: gaps are lost messages, repeats are duplicates.
    pub sequence: u64,
    /// Filler of the requested size.
    pub payload: String,
    pub metadata: MessageMetadata,
}

/// Who sent a message and in which run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMetadata {
    /// The producer's name (the pod name on a cluster; `generator-<index>` for a distributed split).
    pub producer: String,
    /// The test run id (`--test-run`), shared by every producer of one run.
    pub test_run: String,
}

/// What the consumer's Kafka worker writes to [`processed_topic`] after it finished a message's work and before it
/// commits the offset (at-least-once: a report can repeat, a processed message is never unreported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processed {
    pub id: String,
    pub producer: String,
    pub test_run: String,
    pub sequence: u64,
    /// The replica (pod name) that processed it.
    pub consumer: String,
    /// When its work finished (RFC 3339, UTC, milliseconds).
    pub processed_at: String,
    pub partition: i32,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_format_round_trips() {
        let text = r#"{"id":"p-12345","timestamp":"2026-01-11T12:34:56.000Z","sequence":12345,"payload":"test data...","metadata":{"producer":"load-tester-pod-xyz","test_run":"run-abc123"}}"#;
        let message: Message = serde_json::from_str(text).unwrap();
        assert_eq!(message.sequence, 12345);
        assert_eq!(message.metadata.test_run, "run-abc123");
        assert_eq!(serde_json::to_string(&message).unwrap(), text);
        assert_eq!(processed_topic("orders"), "orders.processed");
    }
}
