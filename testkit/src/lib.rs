//! Test support for the workspace's integration tests: spawn its binaries and learn their ephemeral ports from the
//! `listening` log line ([`spawn`], over the `procs` child-process type the lab also uses), await readiness instead
//! of sleeping ([`http`]), run a real Prometheus on 127.0.0.1 ([`prometheus`]), a real OTLP trace sink ([`otlp`]) and a real Kafka
//! broker ([`kafka`], from scripts/kafka/broker.sh).

pub mod http;
pub mod kafka;
pub mod otlp;
pub mod prometheus;
pub mod spawn;
pub mod svg;

use std::path::PathBuf;
use std::time::Duration;

pub use http::{poll_json, wait_http_ok};
pub use prometheus::{Prometheus, free_port};
pub use spawn::{Spawned, children_of};

/// Why a test fixture could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source} (did `cargo build` / scripts/setup.sh run?)")]
    Spawn { source: procs::Error },
    #[error(transparent)]
    Process(procs::Error),
    #[error("{url} did not answer 2xx within {timeout:?}: {last}")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("prometheus query `{query}` failed: {reason}")]
    Query { query: String, reason: String },
    #[error(
        "prometheus query `{query}` did not satisfy the condition within {timeout:?}; last result: {last}"
    )]
    Condition {
        query: String,
        timeout: Duration,
        last: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// Path of a workspace binary in the debug target dir. `cargo test --workspace` builds every binary before any test runs;
/// `CARGO_TARGET_DIR` is honoured.
pub fn bin_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}

/// Fails the test at once when a real component it needs is missing, naming the command that installs it: CI installs
/// everything, so a test that skipped instead could only hide a broken setup (one skip policy: none).
pub fn require_program(program: &str, version_flag: &str, install: &str) {
    let found = std::process::Command::new(program)
        .arg(version_flag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{program} not found: run `make setup` ({install})");
}

/// [`require_program`] for the JVM the Kafka broker runs on.
pub fn require_java() {
    require_program(
        "java",
        "-version",
        "apt-get install -y openjdk-17-jre-headless",
    );
}
