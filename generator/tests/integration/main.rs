//! The generator's integration tests, one test binary (one link step): each module is one concern, driving the
//! library or the `generator` binary against a real consumer on 127.0.0.1.

mod charts;
mod cli;
mod common;
mod coordinated_omission;
mod distribution;
mod engine_rate;
mod exit_codes;
mod job_args;
mod kafka;
mod metrics_prometheus;
mod self_check;
mod traces;
