//! The supervisor's status file (`cluster.json` in the state directory): which phase the cluster is in, the
//! supervisor's pid, the addresses, and each component's pid and restarts. `up` waits on it, `status` prints it,
//! `down` finds the supervisor through it. Written atomically (a temporary file renamed over it).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Ready,
    Stopping,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub pid: Option<u32>,
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub cluster: String,
    pub phase: Phase,
    /// What the supervisor is doing, or why it failed.
    pub message: String,
    /// The exit code a failure maps to (docs/exit-codes.md).
    pub exit_code: Option<i32>,
    pub supervisor_pid: u32,
    pub api_server: String,
    pub kubeconfig: String,
    pub context: String,
    pub node: String,
    /// Seconds since the epoch when the supervisor started, and when the cluster became ready.
    pub started_at: f64,
    pub ready_at: Option<f64>,
    pub components: Vec<ComponentStatus>,
}

impl Status {
    pub fn read(path: &Path) -> Option<Status> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }

    /// Is the supervisor that wrote this still alive?
    pub fn supervisor_alive(&self) -> bool {
        !procs::is_gone(self.supervisor_pid) && is_supervisor(self.supervisor_pid)
    }
}

/// Is `pid` a cluster supervisor (and not an unrelated process that got its pid since)?
fn is_supervisor(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"run")
                && args.first().is_some_and(|exe| exe.ends_with(b"cluster"))
        })
        .unwrap_or(false)
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
