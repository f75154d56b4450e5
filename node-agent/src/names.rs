//! Every name the local cluster gives to something on this machine, derived from the cluster's name in one place:
//! network namespaces, links, the nftables table and the cgroup directory. The bring-up (`cluster`) and the node
//! agent both take their names from here, and the clean-up finds what a crashed cluster left by the same names, so
//! nothing the project did not name is ever touched.

use std::fmt;

/// The project's prefix for namespaces, cgroups and state directories.
pub const PROJECT: &str = "autoscaling-lab";
/// The prefix of every link the project creates (interface names have at most 15 bytes).
pub const LINK_PREFIX: &str = "alab";
/// The bridge the pods' veths join, inside the node's network namespace.
pub const BRIDGE: &str = "alab0";
/// The node namespace's end of the link to the host.
pub const NODE_UPLINK: &str = "alab-uplink";
/// A pod's own end of its veth, inside the pod's network namespace (as every CNI plugin names it).
pub const POD_INTERFACE: &str = "eth0";
/// Cluster names are short: the host's link is `alab-<name>` and must fit in 15 bytes.
pub const MAX_CLUSTER_NAME: usize = 10;

/// A cluster name that was not accepted.
#[derive(Debug, thiserror::Error)]
#[error(
    "cluster name {given:?} is not valid: 1 to {MAX_CLUSTER_NAME} lower-case letters, digits or '-', starting with a letter"
)]
pub struct InvalidName {
    pub given: String,
}

/// The names of one cluster's host objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Result<Names, InvalidName> {
        let valid = !cluster.is_empty()
            && cluster.len() <= MAX_CLUSTER_NAME
            && cluster.starts_with(|c: char| c.is_ascii_lowercase())
            && cluster
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(InvalidName {
                given: cluster.to_string(),
            });
        }
        Ok(Names {
            cluster: cluster.to_string(),
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The kube context (and kubeconfig cluster and user) of this cluster: `autoscaling-lab-local` for `local`.
    pub fn context(&self) -> String {
        format!("{PROJECT}-{}", self.cluster)
    }

    /// The node's network namespace: the bridge, kube-proxy's rules and the guard live in it.
    pub fn node_netns(&self) -> String {
        format!("{PROJECT}-{}", self.cluster)
    }

    /// Every pod network namespace of this cluster starts with this.
    pub fn pod_netns_prefix(&self) -> String {
        format!("{PROJECT}-{}-pod-", self.cluster)
    }

    /// The network namespace of the pod with this UID.
    pub fn pod_netns(&self, pod_uid: &str) -> String {
        format!("{}{pod_uid}", self.pod_netns_prefix())
    }

    /// The host's end of the link to the node namespace.
    pub fn host_link(&self) -> String {
        format!("{LINK_PREFIX}-{}", self.cluster)
    }

    /// The node namespace's end of a pod's veth: `alab` and 11 hex digits of the pod UID's hash (15 bytes).
    pub fn pod_veth(pod_uid: &str) -> String {
        format!(
            "{LINK_PREFIX}{:011x}",
            fnv1a(pod_uid.as_bytes()) & 0xfff_ffff_ffff
        )
    }

    /// The project's nftables table (family `inet`), in the node namespace and on the host.
    pub fn nft_table(&self) -> String {
        format!(
            "{}_{}",
            PROJECT.replace('-', "_"),
            self.cluster.replace('-', "_")
        )
    }

    /// The cgroup directory, under the supervisor's own cgroup in each controller's hierarchy.
    pub fn cgroup_dir(&self) -> String {
        format!("{PROJECT}-{}", self.cluster)
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cluster)
    }
}

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between releases, and a veth name must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits_and_carry_the_project_name() {
        let names = Names::new("local").unwrap();
        assert_eq!(names.context(), "autoscaling-lab-local");
        assert_eq!(names.node_netns(), "autoscaling-lab-local");
        assert_eq!(names.host_link(), "alab-local");
        assert_eq!(names.nft_table(), "autoscaling_lab_local");
        assert!(
            names
                .pod_netns("0b7e")
                .starts_with("autoscaling-lab-local-pod-")
        );
        let longest = Names::new("abcdefghij").unwrap();
        assert!(longest.host_link().len() <= 15);
        let veth = Names::pod_veth("5f1c6a5e-0f0e-4b8a-9d57-3c1bd0f5a0a1");
        assert_eq!(veth.len(), 15);
        assert!(veth.starts_with(LINK_PREFIX));
        assert_eq!(
            veth,
            Names::pod_veth("5f1c6a5e-0f0e-4b8a-9d57-3c1bd0f5a0a1")
        );
        assert_ne!(
            veth,
            Names::pod_veth("5f1c6a5e-0f0e-4b8a-9d57-3c1bd0f5a0a2")
        );
        assert!(NODE_UPLINK.len() <= 15 && BRIDGE.len() <= 15);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "Local", "1abc", "abcdefghijk", "a_b", "a.b"] {
            assert!(Names::new(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
