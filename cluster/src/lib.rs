//! The local cluster: a real Kubernetes on this machine with no Docker. The upstream etcd, API server, controller
//! manager, scheduler, kube-proxy (nftables) and CoreDNS, built from the Go modules under `cluster/upstream/`, and
//! the project's node agent in the kubelet's place, which runs each pod as processes in its own namespaces
//! (`node-agent`). `cluster up` starts it in the background and waits for the node to be Ready; `cluster down`
//! stops it and removes everything it created; docs/kubernetes.md, "The local cluster", is the user's guide.

pub mod apply;
pub mod cleanup;
pub mod cli;
pub mod components;
pub mod config;
pub mod kubeconfig;
pub mod network;
pub mod pki;
pub mod preflight;
pub mod status;
pub mod supervisor;
