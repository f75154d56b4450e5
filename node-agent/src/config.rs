//! The node agent's flags (every one also an environment variable), checked into [`Config`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cidr::Cidr;
use crate::names::Names;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "node-agent",
    version,
    about = "The local cluster's node: runs each pod bound to it as processes (in the kubelet's place)."
)]
pub struct Args {
    /// The cluster's name (it names the namespaces, links and cgroups the agent creates).
    #[arg(long, env = "NODE_AGENT_CLUSTER_NAME", default_value = "local")]
    pub cluster_name: String,
    /// The kubeconfig with the node's credentials (CN system:node:NAME, O system:nodes).
    #[arg(long, env = "NODE_AGENT_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    #[arg(long, env = "NODE_AGENT_NODE_NAME")]
    pub node_name: String,
    /// The node's InternalIP: the kubelet API listens here and pods reach the node here.
    #[arg(long, env = "NODE_AGENT_NODE_IP")]
    pub node_ip: Ipv4Addr,
    #[arg(long, env = "NODE_AGENT_KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The kubelet API's serving certificate and key (PEM).
    #[arg(long, env = "NODE_AGENT_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    #[arg(long, env = "NODE_AGENT_TLS_PRIVATE_KEY_FILE")]
    pub tls_private_key_file: PathBuf,
    /// The CA that signs the client certificates the kubelet API accepts (the API server's kubelet client).
    #[arg(long, env = "NODE_AGENT_CLIENT_CA_FILE")]
    pub client_ca_file: PathBuf,
    /// The cluster DNS Service's IP, written into every pod's resolv.conf.
    #[arg(long, env = "NODE_AGENT_CLUSTER_DNS")]
    pub cluster_dns: Ipv4Addr,
    #[arg(
        long,
        env = "NODE_AGENT_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// The Service network (the pods' route to it goes through the node).
    #[arg(long, env = "NODE_AGENT_SERVICE_CIDR")]
    pub service_cidr: Cidr,
    /// Where volumes and container logs are kept.
    #[arg(long, env = "NODE_AGENT_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Where containers' roots and layers live (under /run: in memory, outside every directory a root overlays).
    #[arg(long, env = "NODE_AGENT_RUN_DIR")]
    pub run_dir: PathBuf,
    /// The image mapping file.
    #[arg(long, env = "NODE_AGENT_IMAGES")]
    pub images: PathBuf,
    /// A directory the mapping file names as ${NAME}: NAME=DIR (repeatable).
    #[arg(long = "image-dir", value_parser = parse_image_dir)]
    pub image_dirs: Vec<(String, PathBuf)>,
    /// The Kubernetes version the agent reports as the node's kubelet version (the control plane's).
    #[arg(long, env = "NODE_AGENT_KUBERNETES_VERSION", default_value = "v1.35.4")]
    pub kubernetes_version: String,
    /// Pods this node accepts (the kubelet's default).
    #[arg(long, env = "NODE_AGENT_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,
    /// Each container log file is rotated at this size; two rotated files are kept.
    #[arg(long, env = "NODE_AGENT_CONTAINER_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub container_log_max_bytes: u64,
    /// The longest a pod is given to stop when the agent itself stops (its own grace period, if shorter, wins).
    #[arg(long, env = "NODE_AGENT_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

fn parse_image_dir(value: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not NAME=DIR"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{name:?} is not a NAME (letters, digits, _)"));
    }
    Ok((name.to_string(), PathBuf::from(dir)))
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub args: Args,
    pub names: Names,
}

impl Args {
    pub fn check(self) -> Result<Config, crate::names::InvalidName> {
        let names = Names::new(&self.cluster_name)?;
        Ok(Config { args: self, names })
    }
}
