//! Moving the current process to where a pod's or a cluster component's process belongs, just before it execs: a
//! parent-death signal (so it cannot outlive whoever started it), its cgroups, its network namespace. Used by the
//! container shim and by the cluster's launcher; each runs single-threaded between fork and exec.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// SIGKILL this process when the thread that started it exits. Cleared by the kernel when credentials change, so call
/// it again after dropping root.
pub fn die_with_parent() -> io::Result<()> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
    // The parent may have died before the prctl: then nobody would ever send the signal.
    if nix::unistd::getppid() != parent {
        return Err(io::Error::other(
            "the parent exited before the child was set up",
        ));
    }
    Ok(())
}

/// Joins each group by writing this process's pid into its `cgroup.procs` files.
pub fn join_cgroups(procs_files: &[PathBuf]) -> io::Result<()> {
    let pid = std::process::id().to_string();
    for file in procs_files {
        fs::write(file, &pid)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

/// The path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Enters the network namespace at `path` (e.g. [`netns_path`]).
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("setns {}: {e}", path.display())))
}
