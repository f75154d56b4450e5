//! The `kafka` trigger's runtime: [`lag`] turns a consumer group's offsets into the trigger's value with KEDA's rules
//! (pure, no I/O), and [`reader`] reads those offsets from the brokers with librdkafka (blocking calls, bounded).

pub mod lag;
pub mod reader;

pub use lag::{LagReport, PartitionOffsets, PreviousOffsets, evaluate};
pub use reader::LagReader;
