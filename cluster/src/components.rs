//! The command line of every process the cluster runs, in the order it starts them: etcd, the API server, the
//! controller manager, the scheduler, the node agent and kube-proxy. Upstream programs get their documented flags
//! only; nothing about them is patched.

use std::path::PathBuf;

use crate::config::{CLUSTER_DOMAIN, Cluster, KUBERNETES_VERSION};
use crate::pki::Pki;

/// One process of the cluster.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The network namespace it runs in (kube-proxy runs in the node's); `None` is this machine's.
    pub netns: Option<String>,
    /// How long it may take to exit after SIGTERM.
    pub grace: std::time::Duration,
}

/// Loopback ports the control plane uses among itself, chosen free at start.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

pub fn etcd(cluster: &Cluster, ports: Ports) -> Component {
    Component {
        name: "etcd",
        program: cluster.binary("etcd"),
        args: vec![
            flag("data-dir", path(&cluster.state_dir.join("etcd"))),
            flag(
                "listen-client-url",
                format!("http://127.0.0.1:{}", ports.etcd_client),
            ),
            flag(
                "listen-peer-url",
                format!("http://127.0.0.1:{}", ports.etcd_peer),
            ),
        ],
        netns: None,
        grace: std::time::Duration::from_secs(10),
    }
}

pub fn apiserver(cluster: &Cluster, pki: &Pki, ports: Ports) -> Component {
    let host = cluster.host_ip();
    Component {
        name: "kube-apiserver",
        program: cluster.binary("kube-apiserver"),
        args: vec![
            flag(
                "etcd-servers",
                format!("http://127.0.0.1:{}", ports.etcd_client),
            ),
            flag("bind-address", host),
            flag("advertise-address", host),
            flag("secure-port", cluster.api_port),
            flag("tls-cert-file", path(&pki.apiserver.cert)),
            flag("tls-private-key-file", path(&pki.apiserver.key)),
            flag("client-ca-file", path(&pki.ca.cert)),
            flag("service-account-key-file", path(&pki.service_account_pub)),
            flag(
                "service-account-signing-key-file",
                path(&pki.service_account_key),
            ),
            flag(
                "service-account-issuer",
                format!("https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
            ),
            flag("authorization-mode", "Node,RBAC"),
            flag("enable-admission-plugins", "NodeRestriction"),
            flag("service-cluster-ip-range", cluster.service_cidr),
            flag("allow-privileged", "true"),
            flag(
                "kubelet-client-certificate",
                path(&pki.apiserver_kubelet_client.cert),
            ),
            flag(
                "kubelet-client-key",
                path(&pki.apiserver_kubelet_client.key),
            ),
            flag("kubelet-certificate-authority", path(&pki.ca.cert)),
            flag("kubelet-preferred-address-types", "InternalIP"),
            flag(
                "requestheader-client-ca-file",
                path(&pki.front_proxy_ca.cert),
            ),
            flag("requestheader-allowed-names", "front-proxy-client"),
            flag("requestheader-username-headers", "X-Remote-User"),
            flag("requestheader-group-headers", "X-Remote-Group"),
            flag("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
            flag("proxy-client-cert-file", path(&pki.front_proxy_client.cert)),
            flag("proxy-client-key-file", path(&pki.front_proxy_client.key)),
            flag("profiling", "false"),
        ],
        netns: None,
        grace: std::time::Duration::from_secs(15),
    }
}

pub fn controller_manager(cluster: &Cluster, pki: &Pki, ports: Ports) -> Component {
    let kubeconfig = path(&cluster.kubeconfig_dir().join("controller-manager.conf"));
    Component {
        name: "kube-controller-manager",
        program: cluster.binary("kube-controller-manager"),
        args: vec![
            flag("kubeconfig", &kubeconfig),
            flag("authentication-kubeconfig", &kubeconfig),
            flag("authorization-kubeconfig", &kubeconfig),
            flag("bind-address", "127.0.0.1"),
            flag("secure-port", ports.controller_manager),
            flag(
                "service-account-private-key-file",
                path(&pki.service_account_key),
            ),
            flag("root-ca-file", path(&pki.ca.cert)),
            flag("use-service-account-credentials", "true"),
            flag("cluster-signing-cert-file", path(&pki.ca.cert)),
            flag("cluster-signing-key-file", path(&pki.ca.key)),
            flag("controllers", "*,bootstrapsigner,tokencleaner"),
            flag("leader-elect", "false"),
            flag("allocate-node-cidrs", "true"),
            flag("cluster-cidr", cluster.pod_cidr),
            flag("node-cidr-mask-size", 24),
            flag("service-cluster-ip-range", cluster.service_cidr),
            flag("profiling", "false"),
        ],
        netns: None,
        grace: std::time::Duration::from_secs(10),
    }
}

pub fn scheduler(cluster: &Cluster, ports: Ports) -> Component {
    let kubeconfig = path(&cluster.kubeconfig_dir().join("scheduler.conf"));
    Component {
        name: "kube-scheduler",
        program: cluster.binary("kube-scheduler"),
        args: vec![
            flag("kubeconfig", &kubeconfig),
            flag("authentication-kubeconfig", &kubeconfig),
            flag("authorization-kubeconfig", &kubeconfig),
            flag("bind-address", "127.0.0.1"),
            flag("secure-port", ports.scheduler),
            flag("leader-elect", "false"),
            flag("profiling", "false"),
        ],
        netns: None,
        grace: std::time::Duration::from_secs(10),
    }
}

pub fn node_agent(cluster: &Cluster, pki: &Pki) -> Component {
    let mut args = vec![
        flag("cluster-name", cluster.names.cluster()),
        flag(
            "kubeconfig",
            path(&cluster.kubeconfig_dir().join("node.conf")),
        ),
        flag("node-name", cluster.node_name()),
        flag("node-ip", cluster.host_ip()),
        flag("kubelet-port", cluster.kubelet_port),
        flag("tls-cert-file", path(&pki.kubelet_serving.cert)),
        flag("tls-private-key-file", path(&pki.kubelet_serving.key)),
        flag("client-ca-file", path(&pki.ca.cert)),
        flag("cluster-dns", cluster.dns_ip()),
        flag("cluster-domain", CLUSTER_DOMAIN),
        flag("service-cidr", cluster.service_cidr),
        flag("state-dir", path(&cluster.node_dir())),
        flag("run-dir", path(&cluster.run_dir())),
        flag("images", path(&cluster.images)),
        flag(
            "image-dir",
            format!("LAB_PROGRAM_DIR={}", path(&cluster.program_dir)),
        ),
        flag(
            "image-dir",
            format!("LAB_CLUSTER_BIN={}", path(&cluster.upstream_bin)),
        ),
    ];
    args.push(flag("kubernetes-version", KUBERNETES_VERSION));
    args.push(flag("max-pods", cluster.max_pods));
    // `cluster down` stops pods quickly, as `kind delete` does; a pod's own shorter grace period still wins.
    args.push(flag("shutdown-grace", "5s"));
    Component {
        name: "node-agent",
        program: cluster.program_dir.join("node-agent"),
        args,
        netns: None,
        // It stops every pod first (each with its own grace, capped) before it exits.
        grace: std::time::Duration::from_secs(45),
    }
}

pub fn kube_proxy(cluster: &Cluster) -> Component {
    Component {
        name: "kube-proxy",
        program: cluster.binary("kube-proxy"),
        args: vec![
            flag(
                "kubeconfig",
                path(&cluster.kubeconfig_dir().join("kube-proxy.conf")),
            ),
            flag("proxy-mode", "nftables"),
            flag("cluster-cidr", cluster.pod_cidr),
            flag("hostname-override", cluster.node_name()),
            // Replies from a Service's pod then come back through the node, which is also what lets a pod reach
            // itself through its Service (with hairpin on its bridge port) without br_netfilter on the machine.
            flag("masquerade-all", "true"),
            // The conntrack table is the machine's: kube-proxy must not resize it.
            flag("conntrack-max-per-core", 0),
            flag("metrics-bind-address", "127.0.0.1:10249"),
            flag("healthz-bind-address", "127.0.0.1:10256"),
        ],
        netns: Some(cluster.names.node_netns()),
        grace: std::time::Duration::from_secs(10),
    }
}
