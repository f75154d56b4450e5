//! A pod's sandbox and volumes: made before its first container (retried, with events, until they work or the pod is
//! deleted) and removed after its last, with its cgroup and runtime files.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::context::Agent;
use super::sandbox::Sandbox;
use super::status::{State, View};
use super::volumes::{self, Volumes};
use super::worker::PodCtx;

pub(super) fn volume_ctx<'a>(
    agent: &'a Agent,
    dir: &'a std::path::Path,
    pod_ip: &'a str,
) -> volumes::Context<'a> {
    volumes::Context {
        objects: &agent.objects,
        dir,
        pod_ip,
        host_ip: &agent.host_ip,
        node_cpu: agent.node_cpu,
        node_memory: agent.node_memory,
    }
}

/// The sandbox and the volumes, retried (every 2 s, with an event) until they work or the pod is deleted.
pub(super) async fn prepare(
    agent: &Arc<Agent>,
    pod: &Pod,
    uid: &str,
    view: &Arc<Mutex<View>>,
    changed: &Arc<Notify>,
    pod_rx: &mut watch::Receiver<Option<Pod>>,
    shutdown: &CancellationToken,
) -> Option<(Sandbox, Volumes)> {
    let set_message = |m: Option<String>| {
        view.lock().unwrap_or_else(|e| e.into_inner()).message = m;
        changed.notify_one();
    };
    let gone = |rx: &watch::Receiver<Option<Pod>>| {
        rx.borrow()
            .as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    };
    let sandbox = loop {
        if gone(pod_rx) || shutdown.is_cancelled() {
            return None;
        }
        let Some(ip) = agent.ipam.allocate() else {
            set_message(Some("no free address in the node's pod network".into()));
            agent
                .event(
                    pod,
                    true,
                    "FailedCreatePodSandBox",
                    "no free address in the node's pod network".into(),
                )
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        match Sandbox::create(&agent.config.names, uid, ip, &agent.ipam).await {
            Ok(s) => break s,
            Err(e) => {
                agent.ipam.release(ip);
                set_message(Some(format!("creating the pod's network: {e}")));
                agent
                    .event(
                        pod,
                        true,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    {
        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
        v.pod_ip = Some(sandbox.ip.to_string());
        v.sandbox_ready = true;
        v.message = None;
    }
    changed.notify_one();
    let dir = agent.pod_state_dir(uid).join("volumes");
    let ip = sandbox.ip.to_string();
    loop {
        if gone(pod_rx) || shutdown.is_cancelled() {
            sandbox.destroy(&agent.config.names).await;
            agent.ipam.release(sandbox.ip);
            return None;
        }
        let vctx = volume_ctx(agent, &dir, &ip);
        match Volumes::prepare(pod, &vctx).await {
            Ok(v) => {
                set_message(None);
                return Some((sandbox, v));
            }
            Err(e) => {
                {
                    let mut waiting = view.lock().unwrap_or_else(|e| e.into_inner());
                    let View {
                        init, containers, ..
                    } = &mut *waiting;
                    for c in init.iter_mut().chain(containers.iter_mut()) {
                        c.state = State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: Some(e.to_string()),
                        };
                    }
                }
                set_message(Some(e.to_string()));
                agent
                    .event(
                        pod,
                        true,
                        "FailedMount",
                        format!("MountVolume.SetUp failed for {e}"),
                    )
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = pod_rx.changed() => {}
                }
            }
        }
    }
}

/// After the last container: the pod's processes, cgroup, network and runtime files go; logs stay until deletion.
pub(super) async fn teardown(agent: &Arc<Agent>, ctx: &PodCtx) {
    let group = agent.pod_group(&ctx.uid, None);
    match tokio::task::spawn_blocking(move || group.kill_and_remove(Duration::from_secs(10))).await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(pod = %ctx.name, "removing the pod's cgroup: {e}"),
        Err(e) => tracing::warn!(pod = %ctx.name, "removing the pod's cgroup: {e}"),
    }
    for problem in ctx.volumes.lock().await.teardown() {
        tracing::warn!(pod = %ctx.name, "{problem}");
    }
    ctx.sandbox.destroy(&agent.config.names).await;
    agent.ipam.release(ctx.sandbox.ip);
    if let Err(e) = std::fs::remove_dir_all(&ctx.run_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pod = %ctx.name, "removing {}: {e}", ctx.run_dir.display());
    }
}
