//! The consumer's integration tests as one test binary (one link step instead of one per file): the HTTP API in
//! process over TCP ([`api`], and jobs, bounds and drain in [`jobs`]), status codes and validation through `oneshot` on the router ([`oneshot`]), the drain on
//! SIGTERM/SIGINT of the real binary ([`shutdown`]), probe latency under full CPU load ([`probes_under_load`]), a real
//! Prometheus scraping the metric contract ([`prometheus`]), Kafka mode on a real broker ([`kafka`]) and spans reaching a real OTLP receiver ([`otlp`]).
//!
//! The counting-allocator tests stay a binary of their own (`tests/allocator.rs`): they install the global allocator
//! and measure process-wide heap figures, which the other tests' allocations would disturb.

mod api;
mod common;
mod jobs;
mod kafka;
mod oneshot;
mod otlp;
mod probes_under_load;
mod prometheus;
mod shutdown;
