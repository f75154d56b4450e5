//! The consumer: the autoscaling lab's target service. An axum server offering CPU, memory, I/O and sustained-CPU
//! load (sync, or async through a bounded queue served by executor slots), probes, a Kafka consumer-group mode, the Prometheus metric contract of
//! ARCHITECTURE.md, OTLP traces, an OpenAPI document and a graceful drain. `main.rs` only parses config and wires.

pub mod alloc;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod executor;
pub mod handlers;
pub mod jobs;
pub mod kafka;
pub mod load;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod process;
pub mod route_templates;
pub mod routes;
pub mod server;
pub mod state;
pub mod sys;
pub mod telemetry;
pub mod validate;
pub mod work;

pub use alloc::CountingAllocator;
pub use config::Config;
pub use error::ConsumerError;
pub use routes::app;
pub use server::serve;
