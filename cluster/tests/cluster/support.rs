//! The test cluster and helpers: one local cluster (its own name, networks and state directory, so it can run
//! beside a developer's) brought up by the real `cluster up`, used through the real API server with kube-rs and
//! kubectl, and taken down by `cluster down` at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt as _};

pub type TestResult = Result<(), String>;

/// The cluster's name and networks: apart from the default `local` cluster's.
pub const NAME: &str = "itest";
pub const POD_CIDR: &str = "10.245.0.0/16";
pub const SERVICE_CIDR: &str = "10.97.0.0/16";
pub const LINK_CIDR: &str = "10.243.254.0/30";

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The binaries under test (this build's).
pub fn bin(name: &str) -> PathBuf {
    let cluster = PathBuf::from(env!("CARGO_BIN_EXE_cluster"));
    cluster.with_file_name(name)
}

/// The running test cluster.
pub struct TestCluster {
    /// The namespaces the tests made.
    created: std::sync::Mutex<Vec<String>>,
    pub state_dir: PathBuf,
    pub kubeconfig_home: PathBuf,
    pub client: Client,
    pub admin_kubeconfig: PathBuf,
}

/// Flags every `cluster` command of the test cluster takes.
pub fn cluster_flags(state_dir: &Path) -> Vec<String> {
    vec![
        format!("--name={NAME}"),
        format!("--state-dir={}", state_dir.display()),
        format!("--pod-cidr={POD_CIDR}"),
        format!("--service-cidr={SERVICE_CIDR}"),
        format!("--link-cidr={LINK_CIDR}"),
    ]
}

/// Runs `cluster ARGS` with the test's kubeconfig file (never the user's).
pub fn cluster_command(kubeconfig_home: &Path, args: &[String]) -> Output {
    Command::new(bin("cluster"))
        .args(args)
        .env("KUBECONFIG", kubeconfig_home.join("config"))
        .env_remove("LAB_CLUSTER_NAME")
        .output()
        .expect("run cluster")
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl TestCluster {
    /// Brings the cluster up with `cluster up`, failing with its output.
    pub fn up(root: &Path) -> Result<TestCluster, String> {
        for program in ["node-agent", "consumer", "generator", "scaler"] {
            if !bin(program).exists() {
                return Err(format!(
                    "{} is missing: cargo build -p node-agent -p consumer -p generator -p scaler (make test builds them)",
                    bin(program).display()
                ));
            }
        }
        let state_dir = root.join("state");
        let kubeconfig_home = root.join("kube");
        std::fs::create_dir_all(&kubeconfig_home).map_err(|e| e.to_string())?;
        let mut args = vec!["up".to_string(), "--no-switch".into()];
        args.extend(cluster_flags(&state_dir));
        let output = cluster_command(&kubeconfig_home, &args);
        if !output.status.success() {
            return Err(format!("cluster up failed:\n{}", text(&output)));
        }
        let admin_kubeconfig = state_dir.join("kubeconfig/admin.conf");
        let client = runtime().block_on(client_from(&admin_kubeconfig))?;
        Ok(TestCluster {
            created: std::sync::Mutex::new(Vec::new()),
            state_dir,
            kubeconfig_home,
            client,
            admin_kubeconfig,
        })
    }

    pub fn down(&self) -> Output {
        let mut args = vec!["down".to_string()];
        args.extend(cluster_flags(&self.state_dir));
        cluster_command(&self.kubeconfig_home, &args)
    }

    /// `kubectl --kubeconfig ADMIN ARGS`, with stdin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl")
    }

    /// Applies YAML (server-side, as `kubectl apply` does); fails with kubectl's output.
    pub fn apply(&self, yaml: &str) -> TestResult {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl apply failed:\n{}\n---\n{yaml}",
                text(&out)
            ))
        }
    }

    /// A fresh namespace for one test; [`TestCluster::remove_test_namespaces`] deletes them between phases, so the
    /// node's CPU (two cores, requests counted) is free for what comes next.
    pub async fn namespace(&self, name: &str) -> Result<String, String> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|e| e.to_string())?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("namespace {name}: {e}"))?;
        // The ServiceAccount admission needs the namespace's default ServiceAccount before pods can be created.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), name);
        poll(Duration::from_secs(30), || async {
            accounts.get_opt("default").await.ok().flatten().map(|_| ())
        })
        .await
        .map_err(|e| format!("namespace {name} has no default ServiceAccount: {e}"))?;
        Ok(name.to_string())
    }
}

impl TestCluster {
    /// Deletes every namespace the tests made so far and waits until they are gone (their pods stopped).
    pub fn remove_test_namespaces(&self) -> TestResult {
        let names: Vec<String> =
            std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        runtime().block_on(async {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            for name in &names {
                match namespaces.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(format!("deleting namespace {name}: {e}")),
                }
            }
            poll(Duration::from_secs(120), || async {
                for name in &names {
                    if namespaces.get_opt(name).await.ok()?.is_some() {
                        return None;
                    }
                }
                Some(())
            })
            .await
            .map_err(|e| format!("the test namespaces {names:?} were not gone: {e}"))
        })
    }
}

async fn client_from(path: &Path) -> Result<Client, String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Calls `check` every 200 ms until it gives `Some`, at most `bound`.
pub async fn poll<T, F, Fut>(bound: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    while started.elapsed() < bound {
        if let Some(v) = check().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not within {bound:?}"))
}

/// Waits until the pod satisfies `ok`, failing with its status and events.
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    bound: Duration,
    what: &str,
    ok: impl Fn(&Pod) -> bool,
) -> Result<Pod, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let found = poll(bound, || async {
        pods.get_opt(name).await.ok().flatten().filter(|p| ok(p))
    })
    .await;
    match found {
        Ok(p) => Ok(p),
        Err(e) => {
            let pod = pods.get_opt(name).await.ok().flatten();
            Err(format!(
                "pod {ns}/{name} never {what} ({e}); status: {}\nevents:\n{}",
                pod.and_then(|p| p.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                    .unwrap_or_default(),
                events(client, ns, name).await
            ))
        }
    }
}

/// The events of an object, one per line.
pub async fn events(client: &Client, ns: &str, name: &str) -> String {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
    match api.list(&params).await {
        Ok(list) => list
            .items
            .iter()
            .map(|e| {
                format!(
                    "  {} {}: {}",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  (events: {e})"),
    }
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first container's terminated state (exit code, reason).
pub fn terminated(p: &Pod) -> Option<(i32, String)> {
    let t = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

/// Waits until the Job has the condition `Complete` or `Failed`; which one.
pub async fn wait_job(
    client: &Client,
    ns: &str,
    name: &str,
    bound: Duration,
) -> Result<String, String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    poll(bound, || async {
        let job = jobs.get_opt(name).await.ok().flatten()?;
        job.status?
            .conditions?
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .map(|c| c.type_)
    })
    .await
    .map_err(|e| format!("job {ns}/{name} did not finish: {e}"))
}

/// A container's whole log.
pub async fn logs(
    client: &Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = LogParams {
        container: container.map(String::from),
        ..LogParams::default()
    };
    pods.logs(pod, &params)
        .await
        .map_err(|e| format!("logs of {ns}/{pod}: {e}"))
}

/// Follows a container's log until a line contains `needle` (bounded); the lines seen.
pub async fn follow_until(
    client: &Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    needle: &str,
    bound: Duration,
) -> Result<Vec<String>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = LogParams {
        follow: true,
        container: container.map(String::from),
        ..LogParams::default()
    };
    let stream = pods
        .log_stream(pod, &params)
        .await
        .map_err(|e| format!("follow {ns}/{pod}: {e}"))?;
    let mut lines = stream.lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(bound, async {
        while let Some(line) = lines.try_next().await.map_err(|e| e.to_string())? {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return Ok::<bool, String>(true);
            }
        }
        Ok(false)
    })
    .await;
    match found {
        Ok(Ok(true)) => Ok(seen),
        Ok(Ok(false)) => Err(format!(
            "the log of {ns}/{pod} ended without {needle:?}: {seen:?}"
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "{needle:?} not in the log of {ns}/{pod} within {bound:?}: {seen:?}"
        )),
    }
}

/// The first pod of a label selector.
pub async fn pods_of(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub async fn delete_pod(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.delete(name, &DeleteParams::default())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

pub fn name_of(p: &Pod) -> String {
    p.name_any()
}

/// Sends SIGINT to the cluster's supervisor and waits (bounded) for it to finish stopping.
pub fn interrupt_supervisor(c: &TestCluster) -> TestResult {
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.state_dir.join("cluster.json"))
            .map_err(|e| format!("cluster.json: {e}"))?,
    )
    .map_err(|e| e.to_string())?;
    let pid = status["supervisor_pid"]
        .as_u64()
        .ok_or("no supervisor pid")? as u32;
    if !procs::send_signal(pid, 2) {
        return Err(format!("the supervisor (pid {pid}) is not running"));
    }
    let started = Instant::now();
    while !procs::is_gone(pid) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the supervisor did not stop within 60 s of SIGINT".to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
