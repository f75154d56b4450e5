//! The lab's integration tests, one test binary (one link step): [`lab_e2e`] drives the library end to end,
//! [`binary`] runs the `lab` executable and checks its signals, exit codes and that no child outlives it,
//! [`scaling_report`] checks the end-of-run scaling report against a long trigger window, [`monitor_explain`] the
//! generator's `--monitor` through the real scaler's `/explain`, [`kafka_scenario`] `--scenario kafka` with a real broker,
//! [`kafka_chaos`] a broker stop during that scenario (`stop-broker`) and the messages it lost (none acknowledged),
//! [`chaos`] faults during the load and their measured recovery, [`console`] and [`console_api`] the web console against
//! the real binary.

mod binary;
mod chaos;
mod console;
mod console_api;
mod kafka_chaos;
mod kafka_scenario;
mod lab_e2e;
mod monitor_explain;
mod scaling_report;

use std::path::PathBuf;

use clap::Parser;
use lab::LabArgs;

/// `LabArgs` as the binary parses them.
#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    lab: LabArgs,
}

/// A workspace binary: `env` when set, else target/debug/`name`.
fn binary(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::bin_path(name))
}

/// Is `pid` still a process (running or an unreaped zombie)?
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every test that runs the whole lab takes this first: each one starts a scaler and consumer replicas and loads
/// them, and the demo's scaling timeline is only meaningful when it has the 2 cores to itself.
async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    MACHINE.lock().await
}
