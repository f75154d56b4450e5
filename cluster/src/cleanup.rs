//! What a cluster leaves on this machine, found by the names it gives things ([`node_agent::names`]), and its
//! removal: processes in the cluster's cgroups, mounts under its runtime and state directories and its namespace
//! files, the pods' and the node's network namespaces, the host link, the host's nftables table, the cgroup
//! directories and the runtime directory. Run after a clean stop (nothing is left) and before every start (a crashed
//! cluster's remains go first).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use node_agent::cgroup::Hierarchy;
use node_agent::host;

use crate::config::Cluster;

/// Everything of one cluster still on the machine.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub processes: Vec<u32>,
    pub mounts: Vec<String>,
    pub netns: Vec<String>,
    pub links: Vec<String>,
    pub nft_tables: Vec<String>,
    pub cgroups: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self == &Leftovers::default()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing");
        }
        let mut parts = Vec::new();
        if !self.processes.is_empty() {
            parts.push(format!("processes {:?}", self.processes));
        }
        if !self.mounts.is_empty() {
            parts.push(format!("mounts {}", self.mounts.join(", ")));
        }
        if !self.netns.is_empty() {
            parts.push(format!("network namespaces {}", self.netns.join(", ")));
        }
        if !self.links.is_empty() {
            parts.push(format!("links {}", self.links.join(", ")));
        }
        if !self.nft_tables.is_empty() {
            parts.push(format!("nftables tables {}", self.nft_tables.join(", ")));
        }
        if !self.cgroups.is_empty() {
            let dirs: Vec<String> = self
                .cgroups
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            parts.push(format!("cgroups {}", dirs.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Command(#[from] host::CommandError),
    #[error(transparent)]
    Cgroup(#[from] node_agent::cgroup::CgroupError),
    #[error("still left after clean-up: {0}")]
    Remaining(Leftovers),
}

fn our_netns(cluster: &Cluster) -> Vec<String> {
    let node = cluster.names.node_netns();
    let pods = cluster.names.pod_netns_prefix();
    let mut names: Vec<String> = host::netns_names()
        .into_iter()
        .filter(|n| *n == node || n.starts_with(&pods))
        .collect();
    names.sort();
    names
}

fn our_mounts(cluster: &Cluster) -> Vec<String> {
    let netns: Vec<PathBuf> = our_netns(cluster)
        .iter()
        .map(|n| node_agent::isolate::netns_path(n))
        .collect();
    let roots = [cluster.run_dir(), cluster.state_dir.clone()];
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4).map(String::from))
        .filter(|m| {
            let p = Path::new(m);
            roots.iter().any(|r| p.starts_with(r)) || netns.iter().any(|n| p == n)
        })
        .collect();
    // Deepest first, for unmounting.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts
}

/// What the cluster has on this machine now.
pub async fn find(cluster: &Cluster) -> Leftovers {
    let group = Hierarchy::detect()
        .ok()
        .map(|h| h.group(Path::new(&cluster.names.cgroup_dir())));
    let link = cluster.names.host_link();
    let table = cluster.names.nft_table();
    let tables = host::nft_args(None, &["list", "tables"])
        .await
        .unwrap_or_default();
    Leftovers {
        processes: group.as_ref().map(|g| g.pids()).unwrap_or_default(),
        mounts: our_mounts(cluster),
        netns: our_netns(cluster),
        links: if Path::new("/sys/class/net").join(&link).exists() {
            vec![link]
        } else {
            vec![]
        },
        nft_tables: tables
            .lines()
            .filter(|l| l.trim() == format!("table inet {table}"))
            .map(|_| format!("inet {table}"))
            .collect(),
        cgroups: group
            .filter(|g| g.exists())
            .map(|g| {
                g.procs_files()
                    .iter()
                    .filter_map(|p| p.parent().map(Path::to_path_buf))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A removal that found its object already gone succeeded.
fn gone_is_fine(result: Result<String, host::CommandError>) -> Result<(), host::CommandError> {
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if [
                "Cannot find device",
                "No such file",
                "No such process",
                "does not exist",
            ]
            .iter()
            .any(|m| e.message.contains(m)) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Removes everything [`find`] finds; fails naming what could not be removed.
pub async fn remove(cluster: &Cluster) -> Result<Leftovers, CleanupError> {
    let found = find(cluster).await;
    if found.is_empty() {
        return Ok(found);
    }
    if let Ok(hierarchy) = Hierarchy::detect() {
        let group = hierarchy.group(Path::new(&cluster.names.cgroup_dir()));
        if group.exists() {
            let group_for_kill = group.clone();
            tokio::task::spawn_blocking(move || {
                group_for_kill.kill_and_remove(Duration::from_secs(10))
            })
            .await
            .map_err(|e| {
                CleanupError::Remaining(Leftovers {
                    cgroups: vec![PathBuf::from(e.to_string())],
                    ..Leftovers::default()
                })
            })??;
        }
    }
    for mount in our_mounts(cluster) {
        // Lazily: a namespace file still open elsewhere detaches when its last user goes.
        nix::mount::umount2(Path::new(&mount), nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            host::CommandError {
                command: format!("umount -l {mount}"),
                message: e.to_string(),
            }
        })?;
    }
    for ns in our_netns(cluster) {
        gone_is_fine(host::ip(&["netns", "delete", &ns]).await)?;
    }
    // The link goes with the node's namespace, a moment after it: deleting it may find it already gone.
    let link = cluster.names.host_link();
    if Path::new("/sys/class/net").join(&link).exists() {
        gone_is_fine(host::ip(&["link", "delete", &link]).await)?;
    }
    if !find(cluster).await.nft_tables.is_empty() {
        let table = cluster.names.nft_table();
        gone_is_fine(host::nft_args(None, &["delete", "table", "inet", &table]).await)?;
    }
    match std::fs::remove_dir_all(cluster.run_dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CleanupError::Command(host::CommandError {
                command: format!("rm -r {}", cluster.run_dir().display()),
                message: e.to_string(),
            }));
        }
    }
    let remaining = find(cluster).await;
    if !remaining.is_empty() {
        return Err(CleanupError::Remaining(remaining));
    }
    Ok(found)
}
