//! The `cluster` commands: `up` (start the local cluster in the background and wait until it is ready), `down`
//! (stop it and remove everything it left), `status`, `leftovers` (list what a cluster has on this machine),
//! `run` (the supervisor in the foreground; `up` starts it) and `exec` (the launcher each component is started
//! through).

use std::io::{BufRead as _, Seek as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use contract::exit;

use crate::config::{Cluster, ClusterArgs};
use crate::status::{Phase, Status};
use crate::{cleanup, kubeconfig, preflight};

#[derive(Debug, clap::Parser)]
#[command(
    name = "cluster",
    version,
    about = "A real Kubernetes on this machine: upstream control plane, CoreDNS and kube-proxy built from source, pods run as processes by the project's node agent."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start the local cluster (in the background) and wait until its node is Ready; merge its kubeconfig.
    Up {
        #[command(flatten)]
        args: ClusterArgs,
        /// Merge the context into the kubeconfig but leave the current context as it is.
        #[arg(long)]
        no_switch: bool,
        /// How long to wait for the cluster to be ready.
        #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Stop the local cluster and remove everything it created (processes, namespaces, links, tables, cgroups,
    /// mounts, its kubeconfig context).
    Down {
        #[command(flatten)]
        args: ClusterArgs,
    },
    /// Say whether the local cluster runs, and how it is.
    Status {
        #[command(flatten)]
        args: ClusterArgs,
    },
    /// List what a cluster of this name has on this machine (nothing, once it is down).
    Leftovers {
        #[command(flatten)]
        args: ClusterArgs,
    },
    /// Run the cluster in the foreground until SIGTERM/SIGINT (what `up` starts in the background).
    Run {
        #[command(flatten)]
        args: ClusterArgs,
    },
    /// Exec PROGRAM after joining cgroups and a network namespace, dying with the parent (internal).
    #[command(hide = true)]
    Exec {
        #[arg(long = "cgroup-procs")]
        cgroup_procs: Vec<PathBuf>,
        #[arg(long)]
        netns: Option<String>,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn say(line: impl AsRef<str>) {
    println!("cluster: {}", line.as_ref());
}

fn refuse(code: i32, message: impl std::fmt::Display) -> i32 {
    eprintln!("cluster: {message}");
    code
}

fn resolve(args: &ClusterArgs) -> Result<Cluster, i32> {
    args.resolve().map_err(|e| refuse(exit::USAGE, e))
}

/// `up`: start `run` in the background unless the cluster already runs, then follow its log until it is ready.
pub fn up(args: &ClusterArgs, no_switch: bool, wait: Duration) -> i32 {
    let cluster = match resolve(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(status) = Status::read(&cluster.status_file())
        && status.supervisor_alive()
        && status.phase != Phase::Failed
    {
        say(format!(
            "{} is already running ({:?}; API {}, context {}, kubeconfig {})",
            cluster.names.cluster(),
            status.phase,
            status.api_server,
            status.context,
            status.kubeconfig
        ));
        return exit::OK;
    }
    if let Err(refusal) = preflight::check(&cluster) {
        return refuse(refusal.exit_code(), refusal);
    }
    if let Err(e) = std::fs::create_dir_all(cluster.logs_dir()) {
        return refuse(
            exit::RUNTIME_ERROR,
            format!("{}: {e}", cluster.logs_dir().display()),
        );
    }
    if let Err(e) = node_agent::host::remove_path(&cluster.status_file()) {
        return refuse(exit::RUNTIME_ERROR, e);
    }
    let log_path = cluster.supervisor_log();
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => return refuse(exit::RUNTIME_ERROR, format!("{}: {e}", log_path.display())),
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cluster"));
    let mut command = std::process::Command::new(exe);
    command.arg("run").args(forwarded(args, &cluster));
    use std::os::unix::process::CommandExt as _;
    // Its own process group: the terminal's Ctrl-C for `make cluster` does not reach the cluster.
    command.process_group(0);
    let Ok(stderr) = log.try_clone() else {
        return refuse(
            exit::RUNTIME_ERROR,
            "cannot open the supervisor's log twice",
        );
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr);
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                exit::RUNTIME_ERROR,
                format!("cannot start the supervisor: {e}"),
            );
        }
    };
    say(format!(
        "starting {} (Kubernetes {}, log {})",
        cluster.names.cluster(),
        crate::config::KUBERNETES_VERSION,
        log_path.display()
    ));
    let mut follower = LogFollower::new(log_path.clone());
    loop {
        follower.print_new();
        if let Ok(Some(status)) = child.try_wait() {
            follower.print_new();
            let code = Status::read(&cluster.status_file())
                .and_then(|s| s.exit_code)
                .unwrap_or(status.code().unwrap_or(exit::RUNTIME_ERROR));
            return refuse(
                code,
                format!(
                    "the cluster did not start ({status}); see {}",
                    log_path.display()
                ),
            );
        }
        if let Some(status) = Status::read(&cluster.status_file())
            && status.phase == Phase::Ready
        {
            follower.print_new();
            return ready(&cluster, &status, no_switch, started.elapsed());
        }
        if started.elapsed() > wait {
            // It may have ended on its own meanwhile: then there is nothing to stop.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            follower.print_new();
            return refuse(
                exit::TARGET_NOT_READY,
                format!(
                    "not ready within {wait:?}; stopped it. See {}",
                    log_path.display()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The flags `run` gets: the resolved paths, so both agree whatever the environment says.
fn forwarded(args: &ClusterArgs, cluster: &Cluster) -> Vec<String> {
    vec![
        format!("--name={}", cluster.names.cluster()),
        format!("--state-dir={}", cluster.state_dir.display()),
        format!("--upstream-bin={}", cluster.upstream_bin.display()),
        format!("--program-dir={}", cluster.program_dir.display()),
        format!("--images={}", cluster.images.display()),
        format!("--pod-cidr={}", args.pod_cidr),
        format!("--service-cidr={}", args.service_cidr),
        format!("--link-cidr={}", args.link_cidr),
        format!("--api-port={}", args.api_port),
        format!("--kubelet-port={}", args.kubelet_port),
        format!("--max-pods={}", args.max_pods),
    ]
}

fn ready(cluster: &Cluster, status: &Status, no_switch: bool, took: Duration) -> i32 {
    let admin = match std::fs::read_to_string(cluster.admin_kubeconfig())
        .map_err(|e| e.to_string())
        .and_then(|t| serde_norway::from_str::<serde_norway::Value>(&t).map_err(|e| e.to_string()))
    {
        Ok(doc) => doc,
        Err(e) => {
            return refuse(
                exit::RUNTIME_ERROR,
                format!("{}: {e}", cluster.admin_kubeconfig().display()),
            );
        }
    };
    let merged = match kubeconfig::user_kubeconfig() {
        Some(path) => match kubeconfig::merge(&path, &admin, !no_switch) {
            Ok(()) => Some(path),
            Err(e) => return refuse(exit::RUNTIME_ERROR, format!("merging the kubeconfig: {e}")),
        },
        None => None,
    };
    say(format!(
        "ready in {:.1} s: API {}, node {}",
        took.as_secs_f64(),
        status.api_server,
        status.node
    ));
    say(format!("admin kubeconfig: {}", status.kubeconfig));
    match merged {
        Some(path) if no_switch => say(format!(
            "context {} added to {} (current context unchanged; kubectl --context {} get nodes)",
            status.context,
            path.display(),
            status.context
        )),
        Some(path) => say(format!(
            "context {} added to {} and made current: kubectl get nodes",
            status.context,
            path.display()
        )),
        None => say(format!(
            "no kubeconfig to merge into: kubectl --kubeconfig {} get nodes",
            status.kubeconfig
        )),
    }
    exit::OK
}

/// Prints the supervisor's log lines as they are written.
struct LogFollower {
    path: PathBuf,
    offset: u64,
}

impl LogFollower {
    fn new(path: PathBuf) -> LogFollower {
        LogFollower { path, offset: 0 }
    }

    fn print_new(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            println!("  {}", line.trim_end());
            line.clear();
        }
    }
}

/// `down`: stop the supervisor (SIGTERM, bounded wait, SIGKILL), then remove anything still there.
pub async fn down(args: &ClusterArgs) -> i32 {
    let cluster = match resolve(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !nix::unistd::geteuid().is_root() {
        return refuse(exit::NOT_PERMITTED, preflight::Refusal::NotRoot);
    }
    match Status::read(&cluster.status_file()) {
        Some(status) if status.supervisor_alive() => {
            say(format!(
                "stopping {} (supervisor pid {})",
                cluster.names.cluster(),
                status.supervisor_pid
            ));
            let pid = nix::unistd::Pid::from_raw(status.supervisor_pid as i32);
            // Gone meanwhile is what is wanted.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(120);
            while !procs::is_gone(status.supervisor_pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !procs::is_gone(status.supervisor_pid) {
                say("the supervisor did not stop in 120 s: killing it");
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        _ => say(format!("{} is not running", cluster.names.cluster())),
    }
    let code = match cleanup::remove(&cluster).await {
        Ok(removed) if removed.is_empty() => exit::OK,
        Ok(removed) => {
            say(format!("removed what was left: {removed}"));
            exit::OK
        }
        Err(e) => refuse(exit::RUNTIME_ERROR, format!("clean-up: {e}")),
    };
    if let Some(path) = kubeconfig::user_kubeconfig() {
        match kubeconfig::unmerge(&path, &cluster.names.context()) {
            Ok(true) => say(format!(
                "context {} removed from {}",
                cluster.names.context(),
                path.display()
            )),
            Ok(false) => {}
            Err(e) => return refuse(exit::RUNTIME_ERROR, format!("kubeconfig: {e}")),
        }
    }
    for path in ["etcd", "node", "pki", "kubeconfig", "cluster.json"] {
        if let Err(e) = node_agent::host::remove_path(&cluster.state_dir.join(path)) {
            return refuse(exit::RUNTIME_ERROR, e);
        }
    }
    if code == exit::OK {
        say(format!(
            "{} is down; nothing left behind (logs kept in {})",
            cluster.names.cluster(),
            cluster.logs_dir().display()
        ));
    }
    code
}

/// `status`: exit 0 when the cluster runs and is ready, 3 otherwise.
pub fn status(args: &ClusterArgs) -> i32 {
    let cluster = match resolve(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(status) = Status::read(&cluster.status_file()) else {
        say(format!("{} is not running", cluster.names.cluster()));
        return exit::TARGET_NOT_READY;
    };
    if !status.supervisor_alive() {
        say(format!(
            "{} is not running (its supervisor, pid {}, is gone; `make cluster-down` removes what it left)",
            cluster.names.cluster(),
            status.supervisor_pid
        ));
        return exit::TARGET_NOT_READY;
    }
    say(format!(
        "{}: {:?} ({})",
        cluster.names.cluster(),
        status.phase,
        status.message
    ));
    say(format!(
        "API {}  context {}  node {}",
        status.api_server, status.context, status.node
    ));
    say(format!("kubeconfig {}", status.kubeconfig));
    for c in &status.components {
        let pid = c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        say(format!(
            "  {:<24} pid {:<8} restarts {}",
            c.name, pid, c.restarts
        ));
    }
    if status.phase == Phase::Ready {
        exit::OK
    } else {
        exit::TARGET_NOT_READY
    }
}

/// `leftovers`: exit 0 when nothing of the cluster is on the machine, 6 when something is (listed).
pub async fn leftovers(args: &ClusterArgs) -> i32 {
    let cluster = match resolve(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let found = cleanup::find(&cluster).await;
    say(format!("{}: {found}", cluster.names.cluster()));
    if found.is_empty() {
        exit::OK
    } else {
        exit::RUNTIME_ERROR
    }
}

/// `exec`: the launcher. Never returns on success.
pub fn exec(cgroup_procs: &[PathBuf], netns: Option<&str>, command: &[String]) -> i32 {
    use std::os::unix::process::CommandExt as _;
    let setup = || -> std::io::Result<()> {
        node_agent::isolate::die_with_parent()?;
        node_agent::isolate::join_cgroups(cgroup_procs)?;
        if let Some(ns) = netns {
            node_agent::isolate::enter_netns(&node_agent::isolate::netns_path(ns))?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return refuse(exit::RUNTIME_ERROR, format!("exec {}: {e}", command[0]));
    }
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    refuse(exit::RUNTIME_ERROR, format!("exec {}: {error}", command[0]))
}
