//! `cluster run`: the process that is the cluster. It removes what a crashed run of the same cluster left, creates
//! the certificates, kubeconfigs and network, starts every component in order and waits for each to be ready,
//! applies the addons (CoreDNS), waits for the node to be Ready, then keeps the components running (a component that
//! exits is restarted with a back-off, as systemd would) until SIGTERM/SIGINT. Then it stops them in reverse order,
//! each with its grace period, and removes everything it created. Every component is its child, started through
//! `cluster exec` so it dies with the supervisor even if the supervisor is killed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use node_agent::cgroup::Hierarchy;
use tokio_util::sync::CancellationToken;

use crate::components::{self, Component, Ports};
use crate::config::{CLUSTER_DOMAIN, COREDNS_VERSION, Cluster};
use crate::kubeconfig;
use crate::pki::Pki;
use crate::status::{ComponentStatus, Phase, Status, now};
use crate::{apply, cleanup, network};

/// How long each start step may take before the bring-up fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Setup(String),
    #[error("port {port} on {addr} is taken: {why} (stop what listens there, or pass --{flag})")]
    PortTaken {
        addr: Ipv4Addr,
        port: u16,
        flag: &'static str,
        why: String,
    },
    #[error("{component} did not become ready within {timeout:?}: {why}; its log: {log}")]
    NotReady {
        component: &'static str,
        timeout: Duration,
        why: String,
        log: PathBuf,
    },
    #[error("interrupted while starting")]
    Interrupted,
}

impl SupervisorError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::NotReady { .. } => contract::exit::TARGET_NOT_READY,
            SupervisorError::Interrupted => contract::exit::INTERRUPTED,
            _ => contract::exit::RUNTIME_ERROR,
        }
    }
}

fn setup_err(what: &str) -> impl FnOnce(String) -> SupervisorError + '_ {
    move |why| SupervisorError::Setup(format!("{what}: {why}"))
}

/// The shared status, written to the status file on every change.
#[derive(Clone)]
struct Shared {
    status: Arc<Mutex<Status>>,
    file: PathBuf,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut status);
        if let Err(e) = status.write(&self.file) {
            tracing::warn!("cannot write {}: {e}", self.file.display());
        }
    }

    fn say(&self, message: String) {
        tracing::info!("{message}");
        self.update(|s| s.message = message);
    }
}

fn free_loopback_port() -> Result<u16, SupervisorError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SupervisorError::Setup(format!("no free loopback port: {e}")))
}

fn check_port(addr: Ipv4Addr, port: u16, flag: &'static str) -> Result<(), SupervisorError> {
    TcpListener::bind(SocketAddr::from((addr, port)))
        .map(drop)
        .map_err(|e| SupervisorError::PortTaken {
            addr,
            port,
            flag,
            why: e.to_string(),
        })
}

/// Runs the cluster until `shutdown`; every path out stops the components and removes what was created.
pub async fn run(cluster: Cluster, shutdown: CancellationToken) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(cluster.logs_dir())
        .map_err(|e| setup_err("state directory")(e.to_string()))?;
    let shared = Shared {
        status: Arc::new(Mutex::new(Status {
            cluster: cluster.names.cluster().to_string(),
            phase: Phase::Starting,
            message: "starting".into(),
            exit_code: None,
            supervisor_pid: std::process::id(),
            api_server: cluster.api_url(),
            kubeconfig: cluster.admin_kubeconfig().display().to_string(),
            context: cluster.names.context(),
            node: cluster.node_name(),
            started_at: now(),
            ready_at: None,
            components: Vec::new(),
        })),
        file: cluster.status_file(),
    };
    shared.update(|_| {});
    let running = Running::default();
    let result = tokio::select! {
        result = start(&cluster, &shared, &running) => result,
        _ = shutdown.cancelled() => Err(SupervisorError::Interrupted),
    };
    match &result {
        Ok(()) => {
            let started = shared
                .status
                .lock()
                .map(|s| s.started_at)
                .unwrap_or_default();
            shared.update(|s| {
                s.phase = Phase::Ready;
                s.ready_at = Some(now());
            });
            shared.say(format!("ready in {:.1} s", now() - started));
            shutdown.cancelled().await;
            shared.update(|s| s.phase = Phase::Stopping);
            shared.say("stopping".into());
        }
        Err(e) => {
            let code = e.exit_code();
            shared.update(|s| {
                s.phase = Phase::Failed;
                s.exit_code = Some(code);
            });
            shared.say(format!("failed: {e}"));
        }
    }
    running.stop_all().await;
    match cleanup::remove(&cluster).await {
        Ok(removed) if removed.is_empty() => tracing::info!("nothing left behind"),
        Ok(removed) => tracing::info!("removed {removed}"),
        Err(e) => tracing::error!("clean-up: {e}"),
    }
    if result.is_ok()
        && let Err(e) = node_agent::host::remove_path(&cluster.status_file())
    {
        tracing::warn!("{e}");
    }
    result
}

/// A started component: its name, the token that stops it, and its supervision task.
type Supervised = (&'static str, CancellationToken, tokio::task::JoinHandle<()>);

/// The components started so far, in start order.
#[derive(Default, Clone)]
struct Running {
    tasks: Arc<tokio::sync::Mutex<Vec<Supervised>>>,
}

impl Running {
    async fn stop_all(&self) {
        let mut tasks = self.tasks.lock().await;
        while let Some((name, token, task)) = tasks.pop() {
            tracing::info!("stopping {name}");
            token.cancel();
            if let Err(e) = task.await {
                tracing::error!("{name}'s supervision task failed: {e}");
            }
        }
    }
}

async fn start(
    cluster: &Cluster,
    shared: &Shared,
    running: &Running,
) -> Result<(), SupervisorError> {
    shared.say("removing what an earlier run left".into());
    let removed = cleanup::remove(cluster)
        .await
        .map_err(|e| setup_err("clean-up")(e.to_string()))?;
    if !removed.is_empty() {
        tracing::info!("removed an earlier run's {removed}");
    }
    let hierarchy = Hierarchy::detect().map_err(|e| setup_err("cgroups")(e.to_string()))?;
    for dir in ["etcd", "node"] {
        node_agent::host::remove_path(&cluster.state_dir.join(dir))
            .map_err(|e| setup_err("state directory")(e.to_string()))?;
    }
    std::fs::create_dir_all(cluster.run_dir())
        .map_err(|e| setup_err("runtime directory")(e.to_string()))?;

    shared.say("generating certificates and kubeconfigs".into());
    let pki = Pki::generate(cluster).map_err(|e| setup_err("certificates")(e.to_string()))?;
    write_kubeconfigs(cluster, &pki).map_err(|e| setup_err("kubeconfigs")(e.to_string()))?;

    shared.say("creating the node's network namespace, link, bridge and guard".into());
    network::setup(cluster)
        .await
        .map_err(|e| setup_err("network")(e.to_string()))?;
    check_port(cluster.host_ip(), cluster.api_port, "api-port")?;
    check_port(cluster.host_ip(), cluster.kubelet_port, "kubelet-port")?;

    let ports = Ports {
        etcd_client: free_loopback_port()?,
        etcd_peer: free_loopback_port()?,
        controller_manager: free_loopback_port()?,
        scheduler: free_loopback_port()?,
    };
    let launch = Launch {
        cluster,
        hierarchy: &hierarchy,
        shared,
        running,
    };

    let etcd = components::etcd(cluster, ports);
    launch.start(etcd).await?;
    wait_for("etcd", cluster, || etcd_healthy(ports.etcd_client)).await?;

    launch
        .start(components::apiserver(cluster, &pki, ports))
        .await?;
    let client = admin_client(cluster).await?;
    wait_for("kube-apiserver", cluster, || api_ready(&client)).await?;

    apply::apply_yaml(&client, include_str!("../addons/node-agent.yaml"))
        .await
        .map_err(|e| setup_err("the node agent's RBAC")(e.to_string()))?;
    launch
        .start(components::controller_manager(cluster, &pki, ports))
        .await?;
    launch.start(components::scheduler(cluster, ports)).await?;
    launch.start(components::node_agent(cluster, &pki)).await?;
    wait_for("node-agent", cluster, || node_registered(&client, cluster)).await?;
    launch.start(components::kube_proxy(cluster)).await?;

    shared.say("applying CoreDNS".into());
    let coredns = include_str!("../addons/coredns.yaml")
        .replace("${DNS_IP}", &cluster.dns_ip().to_string())
        .replace("${DOMAIN}", CLUSTER_DOMAIN)
        .replace("${COREDNS_VERSION}", COREDNS_VERSION);
    apply::apply_yaml(&client, &coredns)
        .await
        .map_err(|e| setup_err("CoreDNS")(e.to_string()))?;
    wait_for("node-agent", cluster, || node_ready(&client, cluster)).await?;
    wait_for("coredns", cluster, || {
        deployment_available(&client, "kube-system", "coredns")
    })
    .await?;
    Ok(())
}

struct Launch<'a> {
    cluster: &'a Cluster,
    hierarchy: &'a Hierarchy,
    shared: &'a Shared,
    running: &'a Running,
}

impl Launch<'_> {
    async fn start(&self, component: Component) -> Result<(), SupervisorError> {
        self.shared.say(format!("starting {}", component.name));
        if !component.program.exists() {
            return Err(SupervisorError::Setup(format!(
                "{} is missing: build it (make cluster builds everything it needs)",
                component.program.display()
            )));
        }
        let group = self.hierarchy.group(
            &Path::new(&self.cluster.names.cgroup_dir())
                .join("control-plane")
                .join(component.name),
        );
        group
            .create()
            .map_err(|e| setup_err(component.name)(e.to_string()))?;
        let log = self
            .cluster
            .logs_dir()
            .join(format!("{}.log", component.name));
        let token = CancellationToken::new();
        let task = tokio::spawn(supervise(
            component.clone(),
            group.procs_files(),
            log,
            self.shared.clone(),
            token.clone(),
        ));
        self.running
            .tasks
            .lock()
            .await
            .push((component.name, token, task));
        Ok(())
    }
}

/// Keeps one component running: restarts it with a back-off (1 s doubling to 30 s) when it exits on its own, stops
/// it with its grace period when cancelled.
async fn supervise(
    component: Component,
    cgroup_procs: Vec<PathBuf>,
    log: PathBuf,
    shared: Shared,
    token: CancellationToken,
) {
    let launcher = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cluster"));
    let mut args: Vec<String> = vec!["exec".into()];
    for file in &cgroup_procs {
        args.push(format!("--cgroup-procs={}", file.display()));
    }
    if let Some(ns) = &component.netns {
        args.push(format!("--netns={ns}"));
    }
    args.push("--".into());
    args.push(component.program.display().to_string());
    args.extend(component.args.iter().cloned());
    let mut backoff = Duration::from_secs(1);
    let mut restarts = 0;
    loop {
        let spawned = procs::Spawn::new(&launcher)
            .name(component.name)
            .args(&args)
            .keep_lines(50)
            .log_file(&log)
            .start()
            .await;
        let started = Instant::now();
        match spawned {
            Ok(mut child) => {
                let pid = child.pid();
                shared.update(|s| set_component(s, component.name, Some(pid), restarts));
                tokio::select! {
                    status = child.wait(Duration::from_secs(365 * 24 * 3600)) => {
                        let status = status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into());
                        tracing::warn!("{} exited ({status}); last output:\n{}", component.name, child.last_output(10));
                    }
                    _ = token.cancelled() => {
                        let outcome = child.stop(component.grace).await;
                        tracing::info!("{} stopped: {outcome:?}", component.name);
                        shared.update(|s| set_component(s, component.name, None, restarts));
                        return;
                    }
                }
            }
            Err(e) => tracing::error!("cannot start {}: {e}", component.name),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        restarts += 1;
        shared.update(|s| set_component(s, component.name, None, restarts));
        tracing::info!("restarting {} in {backoff:?}", component.name);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = token.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn set_component(status: &mut Status, name: &str, pid: Option<u32>, restarts: u32) {
    match status.components.iter_mut().find(|c| c.name == name) {
        Some(c) => {
            c.pid = pid;
            c.restarts = restarts;
        }
        None => status.components.push(ComponentStatus {
            name: name.to_string(),
            pid,
            restarts,
        }),
    }
}

fn write_kubeconfigs(cluster: &Cluster, pki: &Pki) -> Result<(), kubeconfig::KubeconfigError> {
    let server = cluster.api_url();
    let context = cluster.names.context();
    let files = [
        ("admin.conf", &pki.admin),
        ("controller-manager.conf", &pki.controller_manager),
        ("scheduler.conf", &pki.scheduler),
        ("kube-proxy.conf", &pki.proxy),
        ("node.conf", &pki.node),
    ];
    for (file, pair) in files {
        let doc = kubeconfig::single(&context, &server, &pki.ca.cert, pair)?;
        kubeconfig::write(&cluster.kubeconfig_dir().join(file), &doc)?;
    }
    Ok(())
}

/// A client with the admin's kubeconfig.
pub async fn admin_client(cluster: &Cluster) -> Result<Client, SupervisorError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.admin_kubeconfig())
        .map_err(|e| setup_err("admin kubeconfig")(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| setup_err("admin kubeconfig")(e.to_string()))?;
    Client::try_from(config).map_err(|e| setup_err("admin client")(e.to_string()))
}

/// Polls `check` every 250 ms until it answers `Ok`, at most [`STEP_TIMEOUT`].
async fn wait_for<F, Fut>(
    component: &'static str,
    cluster: &Cluster,
    mut check: F,
) -> Result<(), SupervisorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < STEP_TIMEOUT {
        match check().await {
            Ok(()) => {
                tracing::info!(
                    "{component} ready after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(SupervisorError::NotReady {
        component,
        timeout: STEP_TIMEOUT,
        why: last,
        log: cluster.logs_dir().join(format!("{component}.log")),
    })
}

async fn etcd_healthy(port: u16) -> Result<(), String> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if body.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(format!("/health said {body}"))
    }
}

async fn api_ready(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn node_registered(client: &Client, cluster: &Cluster) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(&cluster.node_name()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "node {} is not registered yet",
            cluster.node_name()
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn node_ready(client: &Client, cluster: &Cluster) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .get(&cluster.node_name())
        .await
        .map_err(|e| e.to_string())?;
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "node Ready={}: {}",
            c.status,
            c.message.clone().unwrap_or_default()
        )),
        None => Err("node has no Ready condition yet".into()),
    }
}

async fn deployment_available(client: &Client, namespace: &str, name: &str) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = deployments.get(name).await.map_err(|e| e.to_string())?;
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if available > 0 {
        Ok(())
    } else {
        Err(format!(
            "deployment {namespace}/{name} has no available replica yet"
        ))
    }
}
