//! Kafka load: `generator produce` sends messages in the seed's format ([`contract::kafka::Message`]) on the same
//! open-model schedule as the HTTP profiles and reports acks, throughput and ack latency; `generator verify` reads a
//! test run back and reports lost and duplicated messages per producer. docs/generator.md describes both.

pub mod args;
pub mod metrics;
pub mod produce;
pub mod profiles;
pub mod report;
pub mod verify;

pub use args::{Acks, Compression, KeyStrategy, ProduceArgs, VerifyArgs};
pub use produce::{ProducePlan, produce_command};
pub use report::ProduceReport;
pub use verify::{TopicCheck, VerifyReport, verify_command, verify_report};
