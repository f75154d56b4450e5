//! The scaler's integration tests, one test binary (one link step instead of one per file): the scaler in-process or as
//! its binary on 127.0.0.1, driven over gRPC and HTTP like KEDA and an operator would, against real consumers, a real
//! Prometheus where installed, and a real TLS server.

mod common;
mod grpc_direct;
mod kafka_lag;
mod lifecycle;
mod manifests_triggers;
mod otlp_traces;
mod tls;
mod triggers_follow_load;
