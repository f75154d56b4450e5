//! The Node object: registered at start (capacity from this machine, InternalIP, the kubelet endpoint, node info),
//! its Ready condition and addresses posted by a status loop, and its Lease in `kube-node-lease` renewed every
//! 10 s, as the kubelet does. Also the node's pod network: the /24 the controller manager allocated (spec.podCIDR),
//! whose first address goes on the bridge as the pods' gateway.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cidr::Cidr;
use crate::config::Config;

/// How often the Lease is renewed, and how long it is valid.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Node's status (conditions, heartbeat) is posted.
pub const STATUS_PERIOD: Duration = Duration::from_secs(10);
/// The agent's field manager.
pub const FIELD_MANAGER: &str = "autoscaling-lab-node-agent";
/// The container runtime the node reports (this agent, which runs containers as processes).
pub const RUNTIME_NAME: &str = "autoscaling-lab-node-agent";

fn now() -> Time {
    Time(jiff_now())
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// This machine's CPU count and memory, as the Node's capacity.
pub fn machine_capacity(max_pods: u32) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_string(), Quantity(max_pods.to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity("20Gi".to_string()),
        ),
    ])
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".to_string())
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn conditions(ready: bool, message: &str) -> Vec<NodeCondition> {
    let t = now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(t.clone()),
        last_transition_time: None,
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "node agent has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "node agent has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "node agent has sufficient PID available",
        ),
        if ready {
            condition("Ready", "True", "KubeletReady", message)
        } else {
            condition("Ready", "False", "KubeletNotReady", message)
        },
    ]
}

/// The Node's status as this agent sees it.
pub fn status(config: &Config, ready: bool, message: &str) -> NodeStatus {
    let args = &config.args;
    let capacity = machine_capacity(args.max_pods);
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: args.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: args.node_name.clone(),
            },
        ]),
        conditions: Some(conditions(ready, message)),
        daemon_endpoints: Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(args.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: match std::env::consts::ARCH {
                "x86_64" => "amd64".into(),
                "aarch64" => "arm64".into(),
                other => other.into(),
            },
            operating_system: "linux".into(),
            os_image: os_image(),
            kernel_version: kernel_version(),
            // The control plane's version, marked as this agent's (it is not the upstream kubelet).
            kubelet_version: format!("{}+node-agent", args.kubernetes_version),
            kube_proxy_version: String::new(),
            container_runtime_version: format!("{RUNTIME_NAME}://{}", env!("CARGO_PKG_VERSION")),
            machine_id: std::fs::read_to_string("/etc/machine-id")
                .unwrap_or_default()
                .trim()
                .to_string(),
            system_uuid: String::new(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_string(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Creates the Node (or takes over one of the same name left from before), with its first status.
pub async fn register(client: &Client, config: &Config) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.args.node_name;
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), node_arch()),
        (
            "autoscaling-lab.dev/node-agent".to_string(),
            "true".to_string(),
        ),
    ]);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    post_status(client, config, false, "node agent is starting").await
}

fn node_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// Posts the Node's status.
pub async fn post_status(
    client: &Client,
    config: &Config,
    ready: bool,
    message: &str,
) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": status(config, ready, message) });
    nodes
        .patch_status(
            &config.args.node_name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
}

/// Waits until the controller manager has given the node its pod network.
pub async fn pod_cidr(
    client: &Client,
    config: &Config,
    shutdown: &CancellationToken,
) -> Option<Cidr> {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        match nodes.get(&config.args.node_name).await {
            Ok(node) => {
                if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
                    match cidr.parse() {
                        Ok(c) => return Some(c),
                        Err(e) => tracing::error!("the node's podCIDR {cidr} is not usable: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("reading the node: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Renews the node's Lease every [`LEASE_RENEW`] until `shutdown`; API errors are logged and retried.
pub async fn lease_loop(
    client: Client,
    config: Config,
    node_uid: String,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let name = config.args.node_name.clone();
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: node_uid.clone(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(jiff_now())),
                ..LeaseSpec::default()
            }),
        };
        if let Err(e) = leases
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            tracing::warn!("renewing the node lease: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Posts the node's status every [`STATUS_PERIOD`]; `ready` says whether pods can run.
pub async fn status_loop(
    client: Client,
    config: Config,
    ready: tokio::sync::watch::Receiver<(bool, String)>,
    shutdown: CancellationToken,
) {
    let mut ready = ready;
    loop {
        let (is_ready, message) = ready.borrow_and_update().clone();
        if let Err(e) = post_status(&client, &config, is_ready, &message).await {
            tracing::warn!("posting the node status: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(STATUS_PERIOD) => {}
            _ = ready.changed() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
