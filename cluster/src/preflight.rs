//! What the machine must offer before a cluster can start, each refusal one line with its exit code
//! (docs/exit-codes.md): Linux, root, the tools `ip` and `nft`, cgroups, and the built binaries.

use crate::config::Cluster;

/// A reason the cluster cannot start here.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the local cluster runs on Linux only (this is {0}): use CLUSTER=kind or CLUSTER=k3d elsewhere"
    )]
    NotLinux(&'static str),
    #[error(
        "the local cluster needs root (network namespaces, links, nftables, mounts, cgroups and running pods as their users): run it with sudo"
    )]
    NotRoot,
    #[error("{tool} is missing: apt-get install {package}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{0}")]
    Cgroups(String),
    #[error("{what} is missing at {path}: {hint}")]
    MissingBinary {
        what: String,
        path: String,
        hint: &'static str,
    },
}

impl Refusal {
    pub fn exit_code(&self) -> i32 {
        match self {
            Refusal::NotRoot => contract::exit::NOT_PERMITTED,
            _ => contract::exit::UNSUPPORTED_HOST,
        }
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Checks everything; the first refusal.
pub fn check(cluster: &Cluster) -> Result<(), Refusal> {
    if !cfg!(target_os = "linux") {
        return Err(Refusal::NotLinux(std::env::consts::OS));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(Refusal::NotRoot);
    }
    for tool in ["ip", "nft"] {
        if !on_path(tool) {
            return Err(Refusal::MissingTool {
                tool: if tool == "ip" { "ip" } else { "nft" },
                package: node_agent::host::package_of(tool),
            });
        }
    }
    node_agent::cgroup::Hierarchy::detect().map_err(|e| Refusal::Cgroups(e.to_string()))?;
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "coredns",
    ] {
        let path = cluster.binary(name);
        if !path.exists() {
            return Err(Refusal::MissingBinary {
                what: name.to_string(),
                path: path.display().to_string(),
                hint: "run bash scripts/cluster/build-upstream.sh (make cluster does)",
            });
        }
    }
    let agent = cluster.program_dir.join("node-agent");
    if !agent.exists() {
        return Err(Refusal::MissingBinary {
            what: "node-agent".into(),
            path: agent.display().to_string(),
            hint: "cargo build --release -p node-agent (make cluster does)",
        });
    }
    Ok(())
}
