//! The local cluster's node agent: the one piece that stands in for upstream (the kubelet). It registers a Node,
//! keeps its Lease and Ready condition, and runs every pod bound to it as processes, each pod in its own network
//! namespace on the node's bridge and each container in its own mount, UTS and cgroup namespaces with its cgroup
//! limits enforced, with probes, restarts, logs and the kubelet's API for `kubectl logs` and metrics-server.
//! What a pod here does not have (images, seccomp, real container isolation) is in docs/kubernetes.md.

pub mod agent;
pub mod cgroup;
pub mod cidr;
pub mod config;
pub mod host;
pub mod images;
pub mod isolate;
pub mod logs;
pub mod names;
pub mod netpol;
pub mod node;
pub mod pods;
pub mod quantity;
pub mod server;
pub mod shim;
