//! The local cluster's settings, checked once: its name (and through it every host object's name), networks,
//! ports, and where its state, the upstream binaries and the lab's programs are. Everything else is derived here.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use node_agent::cidr::Cidr;
use node_agent::names::Names;

/// The versions the cluster runs, as pinned in cluster/upstream/*/go.mod (checked by a test).
pub const KUBERNETES_VERSION: &str = "v1.35.4";
pub const ETCD_VERSION: &str = "v3.6.17";
pub const COREDNS_VERSION: &str = "v1.15.0";

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Flags shared by `up` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The cluster's name: its kube context is `autoscaling-lab-NAME`, and every namespace, link, table and cgroup
    /// it creates carries it.
    #[arg(long, env = "LAB_CLUSTER_NAME", default_value = "local")]
    pub name: String,
    /// Where the cluster keeps its certificates, kubeconfigs, etcd data, logs and volumes
    /// (default: ~/.local/state/autoscaling-lab/NAME).
    #[arg(long, env = "LAB_CLUSTER_STATE")]
    pub state_dir: Option<PathBuf>,
    /// Where the upstream binaries are (scripts/cluster/build-upstream.sh prints it).
    #[arg(long, env = "LAB_CLUSTER_BIN")]
    pub upstream_bin: Option<PathBuf>,
    /// Where the lab's own programs are (the images `autoscaling-lab:*` run them); default: this binary's directory.
    #[arg(long, env = "LAB_PROGRAM_DIR")]
    pub program_dir: Option<PathBuf>,
    /// The image mapping file (which local program an image runs).
    #[arg(long, env = "LAB_CLUSTER_IMAGES")]
    pub images: Option<PathBuf>,
    /// The pods' network (the node gets a /24 of it).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: Cidr,
    /// The Services' network.
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: Cidr,
    /// The /30 between this machine and the node: the API server and the node agent listen on its first address.
    #[arg(long, default_value = "10.243.255.0/30")]
    pub link_cidr: Cidr,
    /// The API server's port on the link address.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// The node agent's kubelet API port on the link address.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Pods the node accepts (the kubelet's default; its /24 holds at most 253).
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..=253))]
    pub max_pods: u32,
}

/// Why the settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Name(#[from] node_agent::names::InvalidName),
    #[error("--{flag} {value}: {why}")]
    Network {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("no home directory: set --state-dir (LAB_CLUSTER_STATE)")]
    NoHome,
}

/// The cluster's resolved settings.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub names: Names,
    pub state_dir: PathBuf,
    pub upstream_bin: PathBuf,
    pub program_dir: PathBuf,
    pub images: PathBuf,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub link_cidr: Cidr,
    pub api_port: u16,
    pub kubelet_port: u16,
    pub max_pods: u32,
}

fn home() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(ConfigError::NoHome)
}

/// The default cache of built upstream binaries (scripts/cluster/build-upstream.sh writes there).
pub fn default_upstream_bin() -> Result<PathBuf, ConfigError> {
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => home()?.join(".cache"),
    };
    Ok(cache.join("autoscaling-lab/cluster/bin"))
}

impl ClusterArgs {
    pub fn resolve(&self) -> Result<Cluster, ConfigError> {
        let names = Names::new(&self.name)?;
        let state_dir = match &self.state_dir {
            Some(dir) => dir.clone(),
            None => {
                let state = match std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
                    Some(s) => PathBuf::from(s),
                    None => home()?.join(".local/state"),
                };
                state.join("autoscaling-lab").join(&self.name)
            }
        };
        let upstream_bin = match &self.upstream_bin {
            Some(dir) => dir.clone(),
            None => default_upstream_bin()?,
        };
        let program_dir = match &self.program_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        let images = self
            .images
            .clone()
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("images.yaml"));
        let network = |flag, value: &Cidr, why: String| ConfigError::Network {
            flag,
            value: value.to_string(),
            why,
        };
        if self.link_cidr.prefix() != 30 {
            return Err(network(
                "link-cidr",
                &self.link_cidr,
                "must be a /30".into(),
            ));
        }
        if self.pod_cidr.prefix() > 24 {
            return Err(network(
                "pod-cidr",
                &self.pod_cidr,
                "must be /24 or larger (the node takes a /24 of it)".into(),
            ));
        }
        if self.service_cidr.prefix() > 24 || self.service_cidr.prefix() < 12 {
            return Err(network(
                "service-cidr",
                &self.service_cidr,
                "must be between /12 and /24 (the API server's limits)".into(),
            ));
        }
        let blocks = [
            ("pod-cidr", self.pod_cidr),
            ("service-cidr", self.service_cidr),
            ("link-cidr", self.link_cidr),
        ];
        for (i, (flag, a)) in blocks.iter().enumerate() {
            for (other, b) in &blocks[i + 1..] {
                if a.overlaps(b) {
                    return Err(network(flag, a, format!("overlaps --{other} {b}")));
                }
            }
            if a.contains(Ipv4Addr::LOCALHOST) {
                return Err(network(flag, a, "must not hold loopback addresses".into()));
            }
        }
        Ok(Cluster {
            names,
            state_dir,
            upstream_bin,
            program_dir,
            images,
            pod_cidr: self.pod_cidr,
            service_cidr: self.service_cidr,
            link_cidr: self.link_cidr,
            api_port: self.api_port,
            kubelet_port: self.kubelet_port,
            max_pods: self.max_pods,
        })
    }
}

impl Cluster {
    /// This machine's end of the node link: the API server and the node agent listen here.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.link_cidr.nth(1).expect("a /30 has 4 addresses")
    }

    /// The node namespace's end of the link.
    pub fn node_uplink_ip(&self) -> Ipv4Addr {
        self.link_cidr.nth(2).expect("a /30 has 4 addresses")
    }

    /// The `kubernetes` Service's ClusterIP (the first of the range, as the API server takes it).
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_cidr
            .nth(1)
            .expect("a Service range has more than one address")
    }

    /// The cluster DNS Service's ClusterIP (the tenth, as kubeadm takes it).
    pub fn dns_ip(&self) -> Ipv4Addr {
        self.service_cidr
            .nth(10)
            .expect("a Service range has more than ten addresses")
    }

    pub fn node_name(&self) -> String {
        self.names.context()
    }

    pub fn api_url(&self) -> String {
        format!("https://{}:{}", self.host_ip(), self.api_port)
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.state_dir.join("pki")
    }

    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// The admin kubeconfig (printed by `up`, merged into the user's).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig_dir().join("admin.conf")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// The node agent's disk state (volumes, container logs).
    pub fn node_dir(&self) -> PathBuf {
        self.state_dir.join("node")
    }

    /// Runtime files that live in memory (containers' roots and layers), under /run.
    pub fn run_dir(&self) -> PathBuf {
        Path::new("/run")
            .join(node_agent::names::PROJECT)
            .join(self.names.cluster())
    }

    /// The supervisor's status file.
    pub fn status_file(&self) -> PathBuf {
        self.state_dir.join("cluster.json")
    }

    /// The supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.logs_dir().join("supervisor.log")
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.upstream_bin.join(name)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ClusterArgs,
    }

    fn resolve(args: &[&str]) -> Result<Cluster, ConfigError> {
        let mut argv = vec![
            "cluster",
            "--state-dir",
            "/tmp/x",
            "--upstream-bin",
            "/tmp/b",
        ];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).args.resolve()
    }

    #[test]
    fn addresses_follow_from_the_networks() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.host_ip().to_string(), "10.243.255.1");
        assert_eq!(c.node_uplink_ip().to_string(), "10.243.255.2");
        assert_eq!(c.kubernetes_service_ip().to_string(), "10.96.0.1");
        assert_eq!(c.dns_ip().to_string(), "10.96.0.10");
        assert_eq!(c.api_url(), "https://10.243.255.1:6443");
        assert_eq!(c.node_name(), "autoscaling-lab-local");
        assert_eq!(c.run_dir(), PathBuf::from("/run/autoscaling-lab/local"));
    }

    #[test]
    fn overlapping_or_odd_networks_are_refused_with_the_flag() {
        let err = resolve(&["--service-cidr", "10.244.0.0/16"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--pod-cidr 10.244.0.0/16: overlaps --service-cidr"),
            "{err}"
        );
        let err = resolve(&["--link-cidr", "10.243.0.0/24"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a /30"), "{err}");
        let err = resolve(&["--pod-cidr", "127.0.0.0/16"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
        let err = resolve(&["--name", "Bad_Name"]).unwrap_err().to_string();
        assert!(err.contains("not valid"), "{err}");
    }

    #[test]
    fn the_pinned_versions_are_the_go_modules_versions() {
        let upstream = Path::new(env!("CARGO_MANIFEST_DIR")).join("upstream");
        let read =
            |module: &str| std::fs::read_to_string(upstream.join(module).join("go.mod")).unwrap();
        assert!(read("kubernetes").contains(&format!("k8s.io/kubernetes {KUBERNETES_VERSION}")));
        assert!(read("etcd").contains(&format!("go.etcd.io/etcd/server/v3 {ETCD_VERSION}")));
        assert!(read("coredns").contains(&format!("github.com/coredns/coredns {COREDNS_VERSION}")));
    }
}
