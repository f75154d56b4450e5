//! The agent's top level: register the node, bring up its pod network once the controller manager has allocated
//! it, then run the pod controller, the kubelet API, the Lease and the status loops until shutdown, and stop every
//! pod before returning.

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use tokio_util::sync::CancellationToken;

use crate::cgroup::Hierarchy;
use crate::images::Images;
use crate::pods::{
    self,
    context::{Agent, Registry},
    objects::ApiObjects,
    sandbox::Ipam,
};

use crate::config::Config;
use crate::host;
use crate::names::BRIDGE;
use crate::node;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("kubeconfig {path}: {why}")]
    Kubeconfig { path: String, why: String },
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("the node's network: {0}")]
    Network(#[from] host::CommandError),
    #[error("{0}")]
    Other(String),
}

/// A client with the node's own credentials.
pub async fn client(config: &Config) -> Result<Client, AgentError> {
    let path = config.args.kubeconfig.display().to_string();
    let err = |why: String| AgentError::Kubeconfig {
        path: path.clone(),
        why,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&config.args.kubeconfig)
        .map_err(|e| err(e.to_string()))?;
    let options = kube::config::KubeConfigOptions::default();
    let kube_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| err(e.to_string()))?;
    Client::try_from(kube_config).map_err(|e| err(e.to_string()))
}

/// What an earlier agent of this cluster left when it died (its pods' processes died with it): their network
/// namespaces, cgroups and runtime files. The pods still bound here start again from scratch, as containers do when a
/// node restarts.
async fn remove_stale_pods(config: &Config, hierarchy: &Hierarchy) -> Result<(), AgentError> {
    let prefix = config.names.pod_netns_prefix();
    let stale: Vec<String> = host::netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for ns in &stale {
        host::ip(&["netns", "delete", ns]).await?;
    }
    let pods = hierarchy.group(&std::path::Path::new(&config.names.cgroup_dir()).join("pods"));
    if pods.exists() {
        tokio::task::spawn_blocking(move || {
            pods.kill_and_remove(std::time::Duration::from_secs(10))
        })
        .await
        .map_err(|e| AgentError::Other(e.to_string()))?
        .map_err(|e| AgentError::Other(e.to_string()))?;
    }
    let run_pods = config.args.run_dir.join("pods");
    match std::fs::remove_dir_all(&run_pods) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::Other(format!("{}: {e}", run_pods.display()))),
    }
    if !stale.is_empty() {
        tracing::info!(
            count = stale.len(),
            "removed the sandboxes of an earlier agent"
        );
    }
    Ok(())
}

/// Runs the agent until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    let client = client(&config).await?;
    let registered =
        node::register(&client, &config)
            .await
            .map_err(|source| AgentError::Register {
                node: config.args.node_name.clone(),
                source,
            })?;
    tracing::info!(node = %config.args.node_name, "registered");
    let node_uid = registered.metadata.uid.clone().unwrap_or_default();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel((
        false,
        "waiting for the node's pod network (spec.podCIDR)".to_string(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node::lease_loop(
        client.clone(),
        config.clone(),
        node_uid,
        shutdown.clone(),
    ));
    tasks.spawn(node::status_loop(
        client.clone(),
        config.clone(),
        ready_rx,
        shutdown.clone(),
    ));

    let Some(pod_cidr) = node::pod_cidr(&client, &config, &shutdown).await else {
        return Ok(());
    };
    let gateway = pod_cidr
        .nth(1)
        .ok_or_else(|| AgentError::Other(format!("podCIDR {pod_cidr} is too small")))?;
    let node_netns = config.names.node_netns();
    let address = format!("{gateway}/{}", pod_cidr.prefix());
    match host::ip_in(&node_netns, &["addr", "add", &address, "dev", BRIDGE]).await {
        Ok(_) => {}
        Err(e) if e.message.contains("File exists") => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(%pod_cidr, %gateway, "pod network up");

    let hierarchy = Hierarchy::detect()
        .map_err(|e| AgentError::Other(e.to_string()))?
        .outside(&config.names.cgroup_dir());
    remove_stale_pods(&config, &hierarchy).await?;
    let (services, writer) = reflector::store::<Service>();
    let service_stream = reflector::reflector(
        writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let services_shutdown = shutdown.clone();
    tasks.spawn(async move {
        futures::pin_mut!(service_stream);
        loop {
            tokio::select! {
                item = service_stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!("watching Services: {e} (resuming)"),
                    None => return,
                },
                _ = services_shutdown.cancelled() => return,
            }
        }
    });
    let capacity = node::machine_capacity(config.args.max_pods);
    let node_cpu = capacity
        .get("cpu")
        .and_then(|q| crate::quantity::parse(&q.0))
        .unwrap_or(1.0);
    let node_memory = capacity
        .get("memory")
        .and_then(|q| crate::quantity::bytes(&q.0))
        .unwrap_or(0);
    let agent = Arc::new(Agent {
        recorder: Recorder::new(client.clone(), Agent::reporter(&config.args.node_name)),
        objects: ApiObjects {
            client: client.clone(),
        },
        images: Images::new(config.args.images.clone(), config.args.image_dirs.clone()),
        ipam: Ipam::new(pod_cidr),
        hierarchy,
        services,
        exe: std::env::current_exe()
            .map_err(|e| AgentError::Other(format!("the agent's own path: {e}")))?,
        node_cpu,
        node_memory,
        registry: Registry::default(),
        host_ip: config.args.node_ip.to_string(),
        client: client.clone(),
        config: config.clone(),
    });
    let server = crate::server::serve(agent.clone(), shutdown.clone())
        .await
        .map_err(|e| AgentError::Other(e.to_string()))?;
    tasks.spawn(server);
    tasks.spawn(crate::netpol::run(agent.clone(), shutdown.clone()));
    let _ = ready_tx.send((true, "node agent is posting ready status".to_string()));
    tracing::info!("running pods");
    pods::run(agent.clone(), shutdown.clone()).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}
