//! What the agent asks the shim to start: one container process, fully resolved (program on this machine, arguments,
//! environment, identity, namespaces, cgroups, mounts). Written by the agent as JSON, read by `node-agent shim`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One container's launch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Launch {
    /// The program on this machine that the image's command maps to.
    pub program: PathBuf,
    /// `argv[0]` as the pod spec wrote the command (e.g. `/usr/local/bin/consumer`).
    pub argv0: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The container's working directory; `/` when neither the pod nor the image sets one.
    pub working_dir: String,
    pub hostname: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// `allowPrivilegeEscalation: false`: no_new_privs.
    pub no_new_privileges: bool,
    pub read_only_root: bool,
    /// The pod's network namespace (a file under /run/netns); `None` shares the node agent's.
    pub netns: Option<PathBuf>,
    /// The `cgroup.procs` files to join before anything else runs.
    pub cgroup_procs: Vec<PathBuf>,
    /// The container's runtime directory on this machine (under /run, outside every directory the container's root
    /// overlays): its root's mount point, its overlays' upper layers and its /tmp live there.
    pub dir: PathBuf,
    /// Files the container sees under /etc (hosts, resolv.conf, hostname), by name.
    pub etc_files: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Where the shim writes why it could not start the program; absent when it started.
    pub start_error_file: PathBuf,
}

/// A volume mount: a path on this machine at a path in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: String,
    pub read_only: bool,
}

impl Launch {
    /// The container's root directory (a tmpfs mounted there in the container's own mount namespace).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

/// A command run inside a running container (exec probes and hooks): its namespaces, cgroups and identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecInto {
    /// The container's main process: its network, UTS, cgroup and mount namespaces are entered.
    pub target_pid: u32,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    pub cgroup_procs: Vec<PathBuf>,
}
