//! A pod's sandbox: its network namespace with one veth on the node's bridge (hairpin on, so the pod reaches itself
//! through its Service), an address from the node's pod network, a default route through the node, no IPv6, and
//! unprivileged ports from 0 (as containerd sets it, so a non-root container can bind :53 or :80); its `hosts` and
//! `resolv.conf`; and its cgroup. The address comes from [`Ipam`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::cidr::Cidr;
use crate::host::{self, CommandError};
use crate::names::{BRIDGE, Names, POD_INTERFACE};

/// Addresses of the node's pod network, handed out round-robin (a freed address is the last to be reused, so a
/// stale endpoint does not reach a new pod at once).
#[derive(Debug, Clone)]
pub struct Ipam {
    inner: Arc<Mutex<IpamState>>,
}

#[derive(Debug)]
struct IpamState {
    cidr: Cidr,
    next: u64,
    used: BTreeSet<Ipv4Addr>,
}

impl Ipam {
    pub fn new(cidr: Cidr) -> Ipam {
        Ipam {
            inner: Arc::new(Mutex::new(IpamState {
                cidr,
                next: 2,
                used: BTreeSet::new(),
            })),
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.lock()
            .cidr
            .nth(1)
            .expect("a pod network has a gateway")
    }

    pub fn prefix(&self) -> u8 {
        self.lock().cidr.prefix()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IpamState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free address: from .2 to the one before broadcast.
    pub fn allocate(&self) -> Option<Ipv4Addr> {
        let mut state = self.lock();
        let size = state.cidr.size();
        for _ in 0..size {
            let n = state.next;
            state.next = if n + 2 >= size { 2 } else { n + 1 };
            let Some(ip) = state.cidr.nth(n) else {
                continue;
            };
            if state.used.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    pub fn release(&self, ip: Ipv4Addr) {
        self.lock().used.remove(&ip);
    }

    pub fn in_use(&self) -> usize {
        self.lock().used.len()
    }
}

/// A pod's network namespace and veth.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl Sandbox {
    /// Creates the namespace and wires it to the bridge. On failure whatever was created is removed again.
    pub async fn create(
        names: &Names,
        uid: &str,
        ip: Ipv4Addr,
        ipam: &Ipam,
    ) -> Result<Sandbox, CommandError> {
        let sandbox = Sandbox {
            netns: names.pod_netns(uid),
            veth: Names::pod_veth(uid),
            ip,
        };
        if let Err(e) = sandbox.wire(names, ipam).await {
            sandbox.destroy(names).await;
            return Err(e);
        }
        Ok(sandbox)
    }

    async fn wire(&self, names: &Names, ipam: &Ipam) -> Result<(), CommandError> {
        let node = names.node_netns();
        let pod = self.netns.as_str();
        host::ip(&["netns", "add", pod]).await?;
        host::sysctl_in(
            pod,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv4.ip_unprivileged_port_start=0",
                "net.ipv4.ping_group_range=0 2147483647",
            ],
        )
        .await?;
        host::ip_in(pod, &["link", "set", "lo", "up"]).await?;
        host::ip_in(
            &node,
            &[
                "link",
                "add",
                &self.veth,
                "type",
                "veth",
                "peer",
                "name",
                POD_INTERFACE,
                "netns",
                pod,
            ],
        )
        .await?;
        host::ip_in(&node, &["link", "set", &self.veth, "master", BRIDGE]).await?;
        host::ip_in(
            &node,
            &[
                "link",
                "set",
                "dev",
                &self.veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
        )
        .await?;
        host::ip_in(&node, &["link", "set", &self.veth, "up"]).await?;
        let address = format!("{}/{}", self.ip, ipam.prefix());
        host::ip_in(pod, &["addr", "add", &address, "dev", POD_INTERFACE]).await?;
        host::ip_in(pod, &["link", "set", POD_INTERFACE, "up"]).await?;
        host::ip_in(
            pod,
            &[
                "route",
                "add",
                "default",
                "via",
                &ipam.gateway().to_string(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Removes the namespace (its veth goes with it). Idempotent; problems are logged, as nothing else can be done.
    pub async fn destroy(&self, names: &Names) {
        if std::path::Path::new(&crate::isolate::netns_path(&self.netns)).exists()
            && let Err(e) = host::ip(&["netns", "delete", &self.netns]).await
        {
            tracing::warn!("removing network namespace {}: {e}", self.netns);
        }
        let node = names.node_netns();
        if host::ip_in(&node, &["link", "show", &self.veth])
            .await
            .is_ok()
            && let Err(e) = host::ip_in(&node, &["link", "delete", &self.veth]).await
        {
            tracing::warn!("removing veth {}: {e}", self.veth);
        }
    }
}

/// The pod's `/etc/hosts`, as the kubelet writes it.
pub fn hosts_file(
    ip: Ipv4Addr,
    hostname: &str,
    fqdn: Option<&str>,
    extra: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (the local cluster's node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    match fqdn {
        Some(fqdn) => out.push_str(&format!("{ip}\t{fqdn}\t{hostname}\n")),
        None => out.push_str(&format!("{ip}\t{hostname}\n")),
    }
    if !extra.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in extra {
            out.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    out
}

/// The pod's `/etc/resolv.conf` for `dnsPolicy: ClusterFirst`: the cluster DNS, the namespace's search list, ndots 5.
pub fn resolv_conf(
    dns: Ipv4Addr,
    namespace: &str,
    domain: &str,
    extra_search: &[String],
    options: &[String],
) -> String {
    let mut search = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    search.extend(extra_search.iter().cloned());
    let mut opts = vec!["ndots:5".to_string()];
    for o in options {
        if !o.starts_with("ndots:") {
            opts.push(o.clone());
        } else {
            opts[0] = o.clone();
        }
    }
    format!(
        "search {}\nnameserver {dns}\noptions {}\n",
        search.join(" "),
        opts.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_round_robin_and_skip_the_gateway() {
        let ipam = Ipam::new("10.244.0.0/29".parse().unwrap());
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5).filter_map(|_| ipam.allocate()).collect();
        assert_eq!(got.len(), 5, "6 hosts in a /29 minus the gateway");
        assert_eq!(got[0], Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(ipam.allocate(), None, "full");
        ipam.release(got[0]);
        assert_eq!(ipam.allocate(), Some(got[0]));
        assert!(
            !got.contains(&Ipv4Addr::new(10, 244, 0, 7)),
            "never the broadcast address"
        );
    }

    #[test]
    fn resolv_conf_has_the_namespace_search_list() {
        let text = resolv_conf(
            Ipv4Addr::new(10, 96, 0, 10),
            "autoscaling-lab",
            "cluster.local",
            &[],
            &[],
        );
        assert_eq!(
            text,
            "search autoscaling-lab.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert!(
            hosts_file(Ipv4Addr::new(10, 244, 0, 5), "p", None, &[]).contains("10.244.0.5\tp\n")
        );
    }
}
