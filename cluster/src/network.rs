//! The cluster's network: a network namespace playing the node (its bridge, kube-proxy's rules and the guard live
//! there), joined to this machine by one veth pair, with routes here for the pod and Service networks through it.
//! Pods' traffic can reach pods, Services, and this machine's end of the link (the API server and the node agent),
//! and nothing else: the guard in the project's own nftables table drops and counts every other packet from the pod
//! network before routing, and this machine neither forwards for the link nor accepts the link's address from
//! anywhere else.
//!
//! ```text
//!   this machine                      node namespace autoscaling-lab-NAME          pod namespaces
//!   alab-NAME 10.243.255.1/30  <-->  alab-uplink 10.243.255.2/30
//!   routes 10.244/16, 10.96/16         alab0 (bridge) 10.244.0.1/24  <--veth-->  eth0 10.244.0.N/24
//!     via 10.243.255.2                 kube-proxy (nftables), guard
//! ```

use node_agent::host::{self, CommandError};
use node_agent::names::{BRIDGE, NODE_UPLINK};

use crate::config::Cluster;

/// The guard's counter of dropped pod packets (in the node namespace's table).
pub const ESCAPES_COUNTER: &str = "pod_escapes";
/// This machine's counter of packets that tried to use the link's address from elsewhere or to be forwarded.
pub const HOST_COUNTER: &str = "host_refused";

/// Creates the node namespace, the link, the bridge, the routes and both tables. Call [`teardown`] first when a
/// crashed cluster may have left them.
pub async fn setup(cluster: &Cluster) -> Result<(), CommandError> {
    let node = cluster.names.node_netns();
    let link = cluster.names.host_link();
    let host_ip = format!("{}/30", cluster.host_ip());
    let uplink_ip = format!("{}/30", cluster.node_uplink_ip());
    let uplink_addr = cluster.node_uplink_ip().to_string();
    host::ip(&["netns", "add", &node]).await?;
    host::ip_in(&node, &["link", "set", "lo", "up"]).await?;
    host::ip(&[
        "link",
        "add",
        &link,
        "type",
        "veth",
        "peer",
        "name",
        NODE_UPLINK,
        "netns",
        &node,
    ])
    .await?;
    host::ip(&["addr", "add", &host_ip, "dev", &link]).await?;
    host::ip(&["link", "set", &link, "up"]).await?;
    host::ip_in(&node, &["addr", "add", &uplink_ip, "dev", NODE_UPLINK]).await?;
    host::ip_in(&node, &["link", "set", NODE_UPLINK, "up"]).await?;
    host::ip_in(&node, &["link", "add", BRIDGE, "type", "bridge"]).await?;
    host::ip_in(&node, &["link", "set", BRIDGE, "up"]).await?;
    // Forwarding, and no IPv6 (the guard is IPv4's), in the node's own namespace only.
    host::sysctl_in(
        &node,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )
    .await?;
    for cidr in [cluster.pod_cidr, cluster.service_cidr] {
        host::ip(&[
            "route",
            "add",
            &cidr.to_string(),
            "via",
            &uplink_addr,
            "dev",
            &link,
        ])
        .await?;
    }
    host::nft(Some(&node), &node_table(cluster)).await?;
    host::nft(None, &host_table(cluster)).await?;
    Ok(())
}

/// The guard, in the node namespace: from the bridge, only cluster destinations pass, before any NAT or routing.
pub fn node_table(cluster: &Cluster) -> String {
    let table = cluster.names.nft_table();
    format!(
        "table inet {table} {{\n\
         \tcounter {ESCAPES_COUNTER} {{ }}\n\
         \tchain guard {{\n\
         \t\ttype filter hook prerouting priority -150; policy accept;\n\
         \t\tiifname \"{BRIDGE}\" ip daddr {{ {pods}, {services}, {host} }} accept\n\
         \t\tiifname \"{BRIDGE}\" counter name \"{ESCAPES_COUNTER}\" drop\n\
         \t}}\n\
         }}\n",
        pods = cluster.pod_cidr,
        services = cluster.service_cidr,
        host = cluster.host_ip(),
    )
}

/// This machine's side: the link's address answers only on the link (and loopback), and nothing is forwarded
/// to or from the link.
pub fn host_table(cluster: &Cluster) -> String {
    let table = cluster.names.nft_table();
    let link = cluster.names.host_link();
    format!(
        "table inet {table} {{\n\
         \tcounter {HOST_COUNTER} {{ }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\tip daddr {host} iifname != {{ \"{link}\", \"lo\" }} counter name \"{HOST_COUNTER}\" drop\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname \"{link}\" counter name \"{HOST_COUNTER}\" drop\n\
         \t\toifname \"{link}\" counter name \"{HOST_COUNTER}\" drop\n\
         \t}}\n\
         }}\n",
        host = cluster.host_ip(),
    )
}

/// Reads a named counter's packets from the project's table (in the node namespace, or on this machine).
pub async fn counter_packets(
    cluster: &Cluster,
    in_node: bool,
    counter: &str,
) -> Result<u64, CommandError> {
    let node = cluster.names.node_netns();
    let table = cluster.names.nft_table();
    let out = host::nft_args(
        in_node.then_some(node.as_str()),
        &["list", "counter", "inet", &table, counter],
    )
    .await?;
    Ok(out
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}
