//! One run of one container: its identity from the pod's and container's securityContext over the image's user,
//! its cgroup with the container's limits, the shim that builds its root and execs its program, its output into the
//! log file, and its end: exit code, signal, and the reason the kubelet would give (Completed, Error, OOMKilled,
//! StartError). When the main process ends, whatever it left in the container's cgroup is killed, as a runtime
//! kills a container's PID namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use tokio::io::AsyncReadExt as _;
use tokio::task::JoinHandle;

use crate::cgroup::{Group, Limits};
use crate::images::Resolved;
use crate::logs::{self, Stream};
use crate::quantity;
use crate::shim::{Launch, Mount, START_ERROR_EXIT};

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
    pub no_new_privileges: bool,
    pub read_only_root: bool,
}

/// The container's identity: the container's securityContext over the pod's over the image's user; refused when
/// `runAsNonRoot` is asked and the result is root, as the kubelet refuses it.
pub fn identity(pod: &Pod, container: &Container, image: &Resolved) -> Result<Identity, String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user))
        .map(|u| u as u32)
        .unwrap_or(image.uid);
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group))
        .map(|g| g as u32)
        .unwrap_or(if uid == image.uid { image.gid } else { 0 });
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    let mut supplemental: Vec<u32> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs_group) = pod_sc.and_then(|s| s.fs_group) {
        supplemental.push(fs_group as u32);
    }
    Ok(Identity {
        uid,
        gid,
        supplemental_groups: supplemental,
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        read_only_root: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
    })
}

/// The container's cgroup limits from its resources.
pub fn limits(container: &Container) -> Limits {
    let resources = container.resources.as_ref();
    let limit = |key: &str| {
        resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(key))
            .map(|q| q.0.clone())
    };
    let request = |key: &str| {
        resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(key))
            .map(|q| q.0.clone())
    };
    Limits {
        cpu_millis: limit("cpu").and_then(|q| quantity::cpu_millis(&q)),
        cpu_request_millis: request("cpu").and_then(|q| quantity::cpu_millis(&q)),
        memory_bytes: limit("memory").and_then(|q| quantity::bytes(&q)),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: &'static str,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// Everything a start needs.
pub struct Start<'a> {
    /// The `node-agent` binary (the shim is its `shim` mode).
    pub agent: &'a Path,
    pub image: Resolved,
    pub identity: Identity,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: String,
    pub hostname: String,
    pub netns: PathBuf,
    pub group: Group,
    pub limits: Limits,
    /// The container run's runtime directory (under the node's run directory).
    pub run_dir: PathBuf,
    pub etc_files: Vec<(String, String)>,
    pub log_file: PathBuf,
    pub log_max_bytes: u64,
}

/// A running container.
pub struct Running {
    child: tokio::process::Child,
    pub pid: u32,
    pub started_at: Timestamp,
    pub group: Group,
    run_dir: PathBuf,
    readers: Vec<JoinHandle<()>>,
    oom_before: u64,
    start_error_file: PathBuf,
}

/// Starts a run; `Err` is a failure before the program could be started (reason, message).
pub async fn start(s: Start<'_>) -> Result<Running, (&'static str, String)> {
    let fail = |e: String| ("RunContainerError", e);
    s.group.create().map_err(|e| fail(e.to_string()))?;
    s.group
        .set_limits(s.limits)
        .map_err(|e| fail(e.to_string()))?;
    crate::host::remove_path(&s.run_dir).map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(&s.run_dir)
        .map_err(|e| fail(format!("{}: {e}", s.run_dir.display())))?;
    let start_error_file = s.run_dir.join("start-error");
    let launch = Launch {
        program: s.image.program.clone(),
        argv0: s.image.argv0.clone(),
        args: s.image.args.clone(),
        env: s.env,
        working_dir: s.working_dir,
        hostname: s.hostname,
        uid: Some(s.identity.uid),
        gid: Some(s.identity.gid),
        supplemental_groups: s.identity.supplemental_groups.clone(),
        no_new_privileges: s.identity.no_new_privileges,
        read_only_root: s.identity.read_only_root,
        netns: Some(s.netns),
        cgroup_procs: s.group.procs_files(),
        dir: s.run_dir.clone(),
        etc_files: s.etc_files,
        mounts: s.mounts,
        start_error_file: start_error_file.clone(),
    };
    let spec = s.run_dir.join("launch.json");
    let json = serde_json::to_vec_pretty(&launch).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&spec, json).map_err(|e| fail(format!("{}: {e}", spec.display())))?;
    let oom_before = s.group.oom_kills();
    let writer = logs::Writer::create(s.log_file.clone(), s.log_max_bytes)
        .map_err(|e| fail(format!("log {}: {e}", s.log_file.display())))?;
    let writer = Arc::new(Mutex::new(writer));
    let mut child = tokio::process::Command::new(s.agent)
        .arg("shim")
        .arg(&spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("starting the shim {}: {e}", s.agent.display())))?;
    let started_at = Timestamp::now();
    let pid = child.id().unwrap_or_default();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(copy_lines(
            out,
            Stream::Stdout,
            writer.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(copy_lines(err, Stream::Stderr, writer)));
    }
    Ok(Running {
        child,
        pid,
        started_at,
        group: s.group,
        run_dir: s.run_dir,
        readers,
        oom_before,
        start_error_file,
    })
}

/// Copies one stream into the log, line by line (a final line without a newline too).
async fn copy_lines(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    which: Stream,
    writer: Arc<Mutex<logs::Writer>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut failed = false;
    let write = |line: &[u8], failed: &mut bool| {
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = w.line(which, line)
            && !*failed
        {
            // Logged once: the container keeps running, its lines after this are lost until the disk recovers.
            tracing::warn!("writing a container log: {e}; later lines of this run may be lost");
            *failed = true;
        }
    };
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    write(&line[..line.len() - 1], &mut failed);
                }
                if pending.len() > logs::MAX_LINE {
                    let chunk: Vec<u8> = std::mem::take(&mut pending);
                    write(&chunk, &mut failed);
                }
            }
        }
    }
    if !pending.is_empty() {
        write(&pending, &mut failed);
    }
}

impl Running {
    /// Sends a signal to the container's main process.
    pub fn signal(&self, sig: i32) {
        procs::send_signal(self.pid, sig);
    }

    /// Waits for the main process to end, kills what it left in the cgroup, and says how it ended.
    pub async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        self.finish(status).await
    }

    /// Stops the container as the kubelet does: SIGTERM, up to `grace`, then SIGKILL to every process in it.
    pub async fn stop(&mut self, grace: Duration) -> Exit {
        if let Ok(Some(status)) = self.child.try_wait() {
            return self.finish(Ok(status)).await;
        }
        self.signal(15);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => self.finish(status).await,
            Err(_) => {
                self.kill_group().await;
                let status = self.child.wait().await;
                self.finish(status).await
            }
        }
    }

    async fn kill_group(&self) {
        let group = self.group.clone();
        let pid = self.pid;
        let killed = tokio::task::spawn_blocking(move || {
            procs::send_signal(pid, 9);
            for p in group.pids() {
                procs::send_signal(p, 9);
            }
        })
        .await;
        if let Err(e) = killed {
            tracing::warn!("killing container processes: {e}");
        }
    }

    async fn finish(&mut self, status: std::io::Result<std::process::ExitStatus>) -> Exit {
        use std::os::unix::process::ExitStatusExt as _;
        let finished_at = Timestamp::now();
        // Orphans of the main process die with it, as they would with a container's PID namespace.
        self.kill_group().await;
        for reader in &mut self.readers {
            // A grandchild holding the pipe open must not hold the exit: the log readers get 2 s to finish.
            if !reader.is_finished()
                && tokio::time::timeout(Duration::from_secs(2), reader)
                    .await
                    .is_err()
            {
                tracing::debug!(
                    "a container's output stayed open after its exit (a process it left holds it)"
                );
            }
        }
        let start_error = std::fs::read_to_string(&self.start_error_file)
            .ok()
            .filter(|s| !s.is_empty());
        let oom = self.group.oom_kills() > self.oom_before;
        let (code, signal) = match &status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(sig)) => (128 + sig, Some(sig)),
                _ => (-1, None),
            },
            Err(_) => (-1, None),
        };
        if let Err(e) = crate::host::remove_path(&self.run_dir) {
            tracing::warn!("{e}");
        }
        let (exit_code, reason, message) = if let Some(why) = start_error {
            (START_ERROR_EXIT, "StartError", Some(why))
        } else if oom {
            (137, "OOMKilled", None)
        } else if let Err(e) = status {
            (-1, "Error", Some(format!("waiting for the process: {e}")))
        } else if code == 0 {
            (0, "Completed", None)
        } else {
            (code, "Error", None)
        };
        Exit {
            exit_code,
            signal,
            reason,
            message,
            started_at: self.started_at,
            finished_at,
        }
    }
}

/// A container's runtime directory for one run.
pub fn run_dir(pod_run_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_run_dir.join(format!("{container}-{restart}"))
}
