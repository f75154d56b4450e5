//! The generator's integration tests, one test binary (one link step): each module is one concern, driving the
//! library or the `generator` binary against a real consumer on 127.0.0.1.

mod chaos_k8s;
mod charts;
mod cli;
mod common;
mod coordinated_omission;
mod distribution;
mod engine_rate;
mod exit_codes;
mod job_args;
mod kafka;
mod kube_standin;
mod metrics_prometheus;
mod monitor_k8s;
mod monitor_k8s_phases;
mod self_check;
mod traces;
