//! Child processes of the lab (the scaler and consumer replicas): spawn with ephemeral ports, learn the
//! addresses from the `listening` JSON log lines, keep draining their output, and stop them the way
//! Kubernetes stops a pod (SIGTERM, grace period, then SIGKILL). `kill_on_drop` is the safety net.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How many output lines of a child are kept for error messages.
const KEPT_LINES: usize = 40;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "cannot start {program}: {source} (build it with `cargo build -p {name}`, or pass its path)"
    )]
    Spawn {
        program: String,
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited before it was listening; its last output:\n{output}")]
    Exited { name: String, output: String },
    #[error(
        "{name} did not log `listening` for {missing} within {timeout:?}; its last output:\n{output}"
    )]
    Timeout {
        name: String,
        missing: String,
        timeout: Duration,
        output: String,
    },
}

/// A running child process.
#[derive(Debug)]
pub struct ChildProcess {
    pub name: String,
    pub pid: u32,
    child: Child,
    /// `kind` -> address, from the `listening` lines.
    pub addrs: BTreeMap<String, SocketAddr>,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// The binary `name` beside the running executable (target/<profile>/), or the explicit path.
pub fn locate_binary(explicit: Option<&Path>, name: &str) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Integration tests run from target/<profile>/deps; the binaries live one level up.
    let candidates = [dir.join(name), dir.join("..").join(name)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// Parse a `listening` event: `{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:1234"}}`.
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = value.get("fields").unwrap_or(&value);
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let kind = fields.get("kind")?.as_str()?.to_string();
    let addr = fields.get("addr")?.as_str()?.parse().ok()?;
    Some((kind, addr))
}

impl ChildProcess {
    /// Start `program` and wait until it has logged `listening` for every kind in `kinds`.
    pub async fn start(
        name: &str,
        program: &Path,
        args: &[String],
        kinds: &[&str],
        timeout: Duration,
    ) -> Result<ChildProcess, ProcessError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: program.display().to_string(),
            name: program
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
        // Both streams are read to the end so that a chatty child never blocks on a full pipe.
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump(BufReader::new(stdout), output.clone(), Some(line_tx)));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump(BufReader::new(stderr), output.clone(), None));
        }
        let mut addrs = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while kinds.iter().any(|k| !addrs.contains_key(*k)) {
            let line = tokio::select! {
                line = line_rx.recv() => line,
                _ = tokio::time::sleep_until(deadline) => {
                    let missing: Vec<&str> = kinds.iter().copied().filter(|k| !addrs.contains_key(*k)).collect();
                    return Err(ProcessError::Timeout {
                        name: name.to_string(),
                        missing: missing.join(", "),
                        timeout,
                        output: last_lines(&output),
                    });
                }
            };
            match line {
                Some(line) => {
                    if let Some((kind, addr)) = parse_listening(&line) {
                        addrs.insert(kind, addr);
                    }
                }
                None => {
                    // stdout closed: the child is gone. Give stderr a moment to be captured.
                    let _ = tokio::time::timeout(Duration::from_millis(200), child.wait()).await;
                    return Err(ProcessError::Exited {
                        name: name.to_string(),
                        output: last_lines(&output),
                    });
                }
            }
        }
        Ok(ChildProcess {
            name: name.to_string(),
            pid,
            child,
            addrs,
            output,
        })
    }

    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.addrs.get(kind).copied()
    }

    /// The child's last output lines.
    pub fn last_output(&self) -> String {
        last_lines(&self.output)
    }

    /// Has the child exited on its own?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stop as Kubernetes stops a pod: SIGTERM, wait up to `grace`, then SIGKILL. Always reaps the child.
    pub async fn stop(mut self, grace: Duration) -> StopOutcome {
        if let Ok(Some(status)) = self.child.try_wait() {
            return StopOutcome::AlreadyExited(status.code());
        }
        send_sigterm(self.pid);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => StopOutcome::Drained(status.code()),
            _ => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                StopOutcome::Killed
            }
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited after SIGTERM within the grace period, with this code.
    Drained(Option<i32>),
    /// Needed SIGKILL.
    Killed,
    /// Had already exited.
    AlreadyExited(Option<i32>),
}

/// SIGTERM through the `kill` command: the workspace denies `unsafe`, and `kill` has no other cost here.
fn send_sigterm(pid: u32) {
    if pid == 0 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

async fn pump<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    output: Arc<Mutex<VecDeque<String>>>,
    forward: Option<mpsc::UnboundedSender<String>>,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        {
            let mut kept = output.lock().expect("output lock");
            if kept.len() == KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line.clone());
        }
        if let Some(tx) = &forward {
            // After startup nobody listens; the send error is expected then.
            let _ = tx.send(line);
        }
    }
}

fn last_lines(output: &Arc<Mutex<VecDeque<String>>>) -> String {
    let kept = output.lock().expect("output lock");
    kept.iter()
        .rev()
        .take(15)
        .rev()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (PathBuf, Vec<String>) {
        (PathBuf::from("/bin/sh"), vec!["-c".into(), script.into()])
    }

    #[tokio::test]
    async fn a_child_is_started_by_its_listening_line_and_drained_by_sigterm() {
        let (program, args) = sh(r#"trap 'echo draining; exit 0' TERM
echo 'not json'
echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:4321"}}'
while true; do sleep 0.05; done"#);
        let child =
            ChildProcess::start("fake", &program, &args, &["http"], Duration::from_secs(10))
                .await
                .expect("started");
        assert_eq!(child.addr("http"), Some("127.0.0.1:4321".parse().unwrap()));
        let pid = child.pid;
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert_eq!(
            child.stop(Duration::from_secs(5)).await,
            StopOutcome::Drained(Some(0))
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "reaped"
        );
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let (program, args) = sh(r#"trap '' TERM
echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:1"}}'
while true; do sleep 0.05; done"#);
        let child = ChildProcess::start(
            "stubborn",
            &program,
            &args,
            &["http"],
            Duration::from_secs(10),
        )
        .await
        .expect("started");
        assert_eq!(
            child.stop(Duration::from_millis(300)).await,
            StopOutcome::Killed
        );
    }

    #[tokio::test]
    async fn start_failures_say_why() {
        let (program, args) = sh("echo 'boom: bad flag' >&2; exit 2");
        let err = ChildProcess::start(
            "broken",
            &program,
            &args,
            &["http"],
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("exited before it was listening"), "{err}");
        assert!(err.contains("boom: bad flag"), "{err}");

        let (program, args) = sh(
            r#"echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:1"}}'; sleep 5"#,
        );
        let err = ChildProcess::start(
            "half",
            &program,
            &args,
            &["http", "grpc"],
            Duration::from_millis(300),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("grpc"), "{err}");

        let err = ChildProcess::start(
            "missing",
            std::path::Path::new("/nonexistent/consumer"),
            &[],
            &["http"],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/consumer"), "{err}");
    }

    #[test]
    fn listening_lines_are_parsed() {
        let line = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","kind":"grpc","addr":"127.0.0.1:4000"},"target":"scaler"}"#;
        assert_eq!(
            parse_listening(line),
            Some(("grpc".into(), "127.0.0.1:4000".parse().unwrap()))
        );
        assert_eq!(parse_listening(r#"{"fields":{"message":"ready"}}"#), None);
        assert_eq!(parse_listening("listening on 1.2.3.4:5"), None);
        assert_eq!(
            parse_listening(r#"{"fields":{"message":"listening","kind":"http","addr":"nope"}}"#),
            None
        );
    }
}
