//! One pod on this node, from the time it is bound here until it is gone from the API (a reconcile per object, as
//! kube-rs controllers do, with the latest object always at hand): its sandbox and volumes, init containers in
//! order, then its containers (each a [`runner`](super::runner)), its status written back on every change, its
//! termination (grace period, preStop, SIGTERM, SIGKILL) when it is deleted, then its removal from the API. A pod
//! that completes (Succeeded, Failed) keeps its logs and status until it is deleted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::context::{Agent, PodEntry};
use super::runner::{self, Kind};
use super::sandbox::{self, Sandbox};
use super::setup::{prepare, teardown, volume_ctx};
use super::status::{ContainerView, Ended, State, View};
use super::volumes::Volumes;
use crate::logs;

/// What a pod's containers share while it runs.
pub struct PodCtx {
    pub agent: Arc<Agent>,
    /// The pod as it was when it started (its containers are immutable but for images).
    pub pod: Pod,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub restart_policy: String,
    pub sandbox: Sandbox,
    pub volumes: tokio::sync::Mutex<Volumes>,
    pub hostname: String,
    pub etc_files: Vec<(String, String)>,
    pub log_dir: PathBuf,
    pub run_dir: PathBuf,
    pub view: Arc<Mutex<View>>,
    pub changed: Arc<Notify>,
    /// Cancelled when the pod's containers must stop (deletion, a terminal phase, the agent stopping).
    pub stop: CancellationToken,
    /// The grace period the stop gives each container.
    pub grace_seconds: AtomicU64,
}

impl PodCtx {
    pub fn notify(&self) {
        self.changed.notify_one();
    }

    pub fn with_container<T>(
        &self,
        kind: Kind,
        name: &str,
        f: impl FnOnce(&mut ContainerView) -> T,
    ) -> T {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let list = if kind == Kind::App {
            &mut view.containers
        } else {
            &mut view.init
        };
        let c = list
            .iter_mut()
            .find(|c| c.name == name)
            .expect("every container has a view");
        f(c)
    }

    pub fn set_state(&self, kind: Kind, name: &str, state: State) {
        self.with_container(kind, name, |c| c.state = state);
        self.notify();
    }

    pub fn services(&self) -> Vec<Service> {
        self.agent
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }
}

fn grace_of(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0) as u64
}

/// Runs the pod's life on this node until it is gone from the API (or the agent stops).
pub async fn run(
    agent: Arc<Agent>,
    mut pod_rx: watch::Receiver<Option<Pod>>,
    shutdown: CancellationToken,
) {
    let Some(pod) = pod_rx.borrow_and_update().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let log_dir = logs::pod_dir(&agent.logs_root(), &namespace, &name, &uid);
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &namespace);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let done = phase == "Succeeded" || phase == "Failed";
    if !done && pod.metadata.deletion_timestamp.is_none() {
        live(&agent, &pod, &uid, &log_dir, &mut pod_rx, &shutdown).await;
    }
    if shutdown.is_cancelled() {
        return;
    }
    // Done on this node: remove the API object once it is being deleted, then the files once it is gone.
    loop {
        let latest = pod_rx.borrow_and_update().clone();
        match latest {
            None => break,
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => break,
                    Err(e) => tracing::warn!(pod = %name, "removing the pod from the API: {e}"),
                }
            }
            Some(_) => {}
        }
        tokio::select! {
            changed = pod_rx.changed() => if changed.is_err() { break },
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    agent.registry.remove(&namespace, &name, &uid);
    for dir in [log_dir, agent.pod_state_dir(&uid), agent.pod_run_dir(&uid)] {
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pod = %name, "removing {}: {e}", dir.display());
        }
    }
}

/// From binding to the end of the pod's containers on this node.
async fn live(
    agent: &Arc<Agent>,
    pod: &Pod,
    uid: &str,
    log_dir: &std::path::Path,
    pod_rx: &mut watch::Receiver<Option<Pod>>,
    shutdown: &CancellationToken,
) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let view = Arc::new(Mutex::new(View {
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into()),
        host_ip: agent.config.args.node_ip.to_string(),
        start_time: Some(Timestamp::now()),
        init: spec
            .init_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| ContainerView::new(&c.name, c.image.as_deref().unwrap_or_default()))
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| ContainerView::new(&c.name, c.image.as_deref().unwrap_or_default()))
            .collect(),
        ..View::default()
    }));
    let changed = Arc::new(Notify::new());
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(status_writer(
        agent.clone(),
        pod.clone(),
        view.clone(),
        changed.clone(),
        writer_stop.clone(),
    ));
    changed.notify_one();

    let Some((sandbox, volumes)) =
        prepare(agent, pod, uid, &view, &changed, pod_rx, shutdown).await
    else {
        writer_stop.cancel();
        if let Err(e) = writer.await {
            tracing::error!("the pod's status writer failed: {e}");
        }
        return;
    };
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| name.chars().take(63).collect());
    let fqdn = spec.subdomain.as_ref().map(|sub| {
        format!(
            "{hostname}.{sub}.{namespace}.svc.{}",
            agent.config.args.cluster_domain
        )
    });
    let aliases: Vec<(String, Vec<String>)> = spec
        .host_aliases
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
        .collect();
    let dns = spec.dns_config.as_ref();
    let resolv = sandbox::resolv_conf(
        agent.config.args.cluster_dns,
        &namespace,
        &agent.config.args.cluster_domain,
        dns.and_then(|d| d.searches.clone())
            .unwrap_or_default()
            .as_slice(),
        &dns.and_then(|d| d.options.clone())
            .unwrap_or_default()
            .iter()
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            })
            .collect::<Vec<_>>(),
    );
    let ctx = Arc::new(PodCtx {
        agent: agent.clone(),
        pod: pod.clone(),
        uid: uid.to_string(),
        namespace: namespace.clone(),
        name: name.clone(),
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into()),
        etc_files: vec![
            (
                "hosts".into(),
                sandbox::hosts_file(sandbox.ip, &hostname, fqdn.as_deref(), &aliases),
            ),
            ("resolv.conf".into(), resolv),
            ("hostname".into(), format!("{hostname}\n")),
        ],
        hostname,
        sandbox,
        volumes: tokio::sync::Mutex::new(volumes),
        log_dir: log_dir.to_path_buf(),
        run_dir: agent.pod_run_dir(uid),
        view: view.clone(),
        changed: changed.clone(),
        stop: CancellationToken::new(),
        grace_seconds: AtomicU64::new(grace_of(pod)),
    });
    agent.registry.insert(
        &namespace,
        &name,
        PodEntry {
            uid: uid.to_string(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            veth: ctx.sandbox.veth.clone(),
            log_dir: log_dir.to_path_buf(),
            containers: Default::default(),
            group: agent.pod_group(uid, None),
        },
    );
    let containers = tokio::spawn(run_containers(ctx.clone()));
    let deadline = spec
        .active_deadline_seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s.max(0) as u64));
    let mut refresh = tokio::time::interval(Duration::from_secs(30));
    refresh.tick().await;
    let mut containers = containers;
    // Watch for deletion, the deadline and the containers' end; refresh volumes meanwhile.
    let ended_on_its_own = loop {
        tokio::select! {
            result = &mut containers => {
                if let Err(e) = result {
                    tracing::error!(pod = %name, "the pod's container task failed: {e}");
                }
                break true;
            }
            changed = pod_rx.changed() => {
                let latest = pod_rx.borrow_and_update().clone();
                match (changed, latest) {
                    (Ok(()), Some(p)) if p.metadata.deletion_timestamp.is_none() => {
                        agent.registry.set_labels(&namespace, &name, p.metadata.labels.clone().unwrap_or_default());
                        continue;
                    }
                    (_, latest) => {
                        let grace = latest.as_ref().map(grace_of).unwrap_or(0);
                        ctx.grace_seconds.store(grace, Ordering::SeqCst);
                        break false;
                    }
                }
            }
            _ = shutdown.cancelled() => {
                let grace = grace_of(pod).min(agent.config.args.shutdown_grace.as_secs());
                ctx.grace_seconds.store(grace, Ordering::SeqCst);
                break false;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                agent.event(pod, false, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline".into()).await;
                ctx.view.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(Ended {
                    phase: "Failed",
                    reason: Some("DeadlineExceeded".into()),
                    message: Some("Pod was active on the node longer than the specified deadline".into()),
                });
                break false;
            }
            _ = refresh.tick() => {
                let mut volumes = ctx.volumes.lock().await;
                let dir = ctx.agent.pod_state_dir(uid).join("volumes");
                let ip = ctx.sandbox.ip.to_string();
                let vctx = volume_ctx(agent, &dir, &ip);
                if let Err(e) = volumes.update(pod, &vctx, false).await {
                    agent.event(pod, true, "FailedMount", format!("refreshing: {e}")).await;
                }
            }
        }
    };
    ctx.stop.cancel();
    if !ended_on_its_own && let Err(e) = containers.await {
        tracing::error!(pod = %name, "the pod's container task failed: {e}");
    }
    {
        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
        if v.ended.is_none() && ended_on_its_own {
            let phase = v.phase();
            v.ended = Some(Ended {
                phase,
                reason: None,
                message: None,
            });
        }
        v.sandbox_ready = false;
    }
    changed.notify_one();
    teardown(agent, &ctx).await;
    writer_stop.cancel();
    if let Err(e) = writer.await {
        tracing::error!(pod = %name, "the pod's status writer failed: {e}");
    }
}

/// Runs init containers in order (a sidecar starts and stays), then every app container until each ends for
/// good; fails the pod when an init container fails under `restartPolicy: Never`.
async fn run_containers(ctx: Arc<PodCtx>) {
    let spec = ctx.pod.spec.clone().unwrap_or_default();
    let mut sidecars = Vec::new();
    for init in spec.init_containers.clone().unwrap_or_default() {
        if init.restart_policy.as_deref() == Some("Always") {
            let c = ctx.clone();
            let name = init.name.clone();
            sidecars.push(tokio::spawn(runner::run(c, init, Kind::Sidecar)));
            // The next init container starts once this sidecar has started.
            while !ctx.with_container(Kind::Sidecar, &name, |c| {
                c.started || matches!(c.state, State::Running { .. })
            }) {
                tokio::select! {
                    _ = ctx.changed.notified() => {}
                    _ = ctx.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            ctx.with_container(Kind::Sidecar, &name, |c| c.started = true);
            continue;
        }
        match runner::run(ctx.clone(), init.clone(), Kind::Init).await {
            Some(exit) if exit.exit_code == 0 => {}
            Some(exit) => {
                ctx.view.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(Ended {
                    phase: "Failed",
                    reason: None,
                    message: Some(format!(
                        "init container {} exited with {}",
                        init.name, exit.exit_code
                    )),
                });
                ctx.notify();
                return;
            }
            None => return,
        }
    }
    ctx.notify();
    let apps: Vec<_> = spec
        .containers
        .iter()
        .cloned()
        .map(|c| tokio::spawn(runner::run(ctx.clone(), c, Kind::App)))
        .collect();
    for app in apps {
        if let Err(e) = app.await {
            tracing::error!(pod = %ctx.name, "a container task failed: {e}");
        }
    }
    // The app containers ended for good: sidecars stop with the pod.
    ctx.stop.cancel();
    for sidecar in sidecars {
        if let Err(e) = sidecar.await {
            tracing::error!(pod = %ctx.name, "a sidecar task failed: {e}");
        }
    }
}

/// Posts the pod's status whenever it changes (coalescing bursts), until `stop`; then once more.
async fn status_writer(
    agent: Arc<Agent>,
    pod: Pod,
    view: Arc<Mutex<View>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &namespace);
    let mut last = serde_json::Value::Null;
    loop {
        let stopping = tokio::select! {
            _ = changed.notified() => false,
            _ = stop.cancelled() => true,
        };
        // Changes come in bursts (a container's state, then its readiness): post once for them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = view.lock().unwrap_or_else(|e| e.into_inner()).status();
        let body = serde_json::json!({ "status": status });
        if body != last {
            match pods
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&body))
                .await
            {
                Ok(_) => last = body,
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = %name, "posting the pod's status: {e}");
                    // Try again soon.
                    changed.notify_one();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if stopping {
            return;
        }
    }
}
