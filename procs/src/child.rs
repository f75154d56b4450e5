//! [`Spawn`] (what to start and what to await) and [`Child`] (a running process and its captured output).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::OUTPUT_DRAIN;
use crate::output::{Output, capture};
use crate::registry::Registry;
use crate::signal::{Handle, SIGKILL, SIGTERM};

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}) before it was listening; its last output:\n{output}")]
    Exited {
        name: String,
        status: String,
        output: String,
    },
    #[error(
        "{name} did not log `listening` for {missing} within {timeout:?}; its last output:\n{output}"
    )]
    NotListening {
        name: String,
        missing: String,
        timeout: Duration,
        output: String,
    },
}

/// What to start: program, arguments, environment, and which `listening` kinds to await before [`Spawn::start`]
/// returns.
#[derive(Debug, Clone)]
pub struct Spawn {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    kinds: Vec<String>,
    timeout: Duration,
    keep: Option<usize>,
    quote: Option<usize>,
    registry: Option<Registry>,
    log_file: Option<PathBuf>,
}

impl Spawn {
    /// Starts `program`; its name (in messages) is the file name until [`Spawn::name`] says otherwise.
    pub fn new(program: impl AsRef<OsStr>) -> Spawn {
        let program = PathBuf::from(program.as_ref());
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.display().to_string());
        Spawn {
            name,
            program,
            args: Vec::new(),
            envs: Vec::new(),
            env_remove: Vec::new(),
            kinds: Vec::new(),
            timeout: Duration::from_secs(30),
            keep: None,
            quote: None,
            registry: None,
            log_file: None,
        }
    }

    pub fn name(mut self, name: &str) -> Spawn {
        self.name = name.to_string();
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Spawn {
        self.env_remove.push(key.as_ref().to_os_string());
        self
    }

    /// Await a `listening` line for each of these kinds (see `contract::listening::kind`), at most `timeout`.
    pub fn listening(mut self, kinds: &[&str], timeout: Duration) -> Spawn {
        self.kinds = kinds.iter().map(|k| k.to_string()).collect();
        self.timeout = timeout;
        self
    }

    /// Keep only the last `lines` output lines (default: all).
    pub fn keep_lines(mut self, lines: usize) -> Spawn {
        self.keep = Some(lines);
        self
    }

    /// A start error quotes the last `lines` output lines (default: every line kept).
    pub fn quote_lines(mut self, lines: usize) -> Spawn {
        self.quote = Some(lines);
        self
    }

    /// Track the child in `registry` from spawn until it is reaped or dropped.
    pub fn register(mut self, registry: &Registry) -> Spawn {
        self.registry = Some(registry.clone());
        self
    }

    /// Also append every output line to the file at `path` (created if missing), for a long-lived child whose whole
    /// log is wanted on disk while only the last lines are kept in memory.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Spawn {
        self.log_file = Some(path.into());
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Spawns the program and waits until it has logged `listening` for every awaited kind. On failure the child is
    /// killed and reaped before the error is returned, and the error quotes its last output.
    pub async fn start(self) -> Result<Child, Error> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let log = match &self.log_file {
            Some(path) => Some(Arc::new(std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::Spawn {
                        program: format!("{} (its log {})", self.program.display(), path.display()),
                        source,
                    })?,
            ))),
            None => None,
        };
        let mut process = command.spawn().map_err(|source| Error::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        let pid = process.id().unwrap_or_default();
        // Opened before anything can reap the child, so the handle names this process.
        let handle = Arc::new(Handle::open(pid));
        if let Some(registry) = &self.registry {
            registry.add(pid, &self.name, handle.clone());
        }
        let output = Output::new(self.keep);
        let (listen_tx, mut listen_rx) = mpsc::unbounded_channel();
        let mut readers = Vec::new();
        if let Some(stdout) = process.stdout.take() {
            readers.push(tokio::spawn(capture(
                stdout,
                output.clone(),
                listen_tx.clone(),
                log.clone(),
            )));
        }
        if let Some(stderr) = process.stderr.take() {
            readers.push(tokio::spawn(capture(
                stderr,
                output.clone(),
                listen_tx,
                log,
            )));
        }
        let mut child = Child {
            name: self.name,
            pid,
            process,
            handle,
            addrs: BTreeMap::new(),
            output,
            readers,
            registry: self.registry,
            status: None,
        };

        let quote = self.quote.unwrap_or(usize::MAX);
        let deadline = tokio::time::Instant::now() + self.timeout;
        while let Some(missing) = child.missing(&self.kinds) {
            match tokio::time::timeout_at(deadline, listen_rx.recv()).await {
                Ok(Some(found)) => {
                    child.addrs.insert(found.kind, found.addr);
                }
                // Both pipes closed: the child is gone or going. Reap it and read everything it wrote.
                Ok(None) => {
                    let status = child.wait(Duration::from_secs(5)).await;
                    let status = match status {
                        Some(s) => s.to_string(),
                        None => {
                            child.kill_and_reap().await;
                            "closed its output".to_string()
                        }
                    };
                    return Err(Error::Exited {
                        name: child.name.clone(),
                        status,
                        output: child.output.tail(quote),
                    });
                }
                Err(_) => {
                    child.kill_and_reap().await;
                    return Err(Error::NotListening {
                        name: child.name.clone(),
                        missing,
                        timeout: self.timeout,
                        output: child.output.tail(quote),
                    });
                }
            }
        }
        Ok(child)
    }
}

/// A running (or exited, not yet dropped) child process. Dropping it kills the process (SIGKILL) if it still runs.
#[derive(Debug)]
pub struct Child {
    name: String,
    pid: u32,
    process: tokio::process::Child,
    handle: Arc<Handle>,
    /// `kind` -> address, from the `listening` lines.
    addrs: BTreeMap<String, SocketAddr>,
    output: Arc<Output>,
    /// The reader tasks of stdout and stderr; finished once each pipe reached end-of-file.
    readers: Vec<JoinHandle<()>>,
    registry: Option<Registry>,
    /// Set once reaped.
    status: Option<ExitStatus>,
}

/// How a child ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited after SIGTERM within the grace period, with this code.
    Drained(Option<i32>),
    /// Needed SIGKILL (after the grace, or from a [`crate::Registry::kill_all`] meanwhile).
    Killed,
    /// Had already exited, with this code.
    AlreadyExited(Option<i32>),
}

impl Child {
    fn missing(&self, kinds: &[String]) -> Option<String> {
        let missing: Vec<&str> = kinds
            .iter()
            .filter(|k| !self.addrs.contains_key(k.as_str()))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address logged as `listening` for `kind`, if it was awaited or has been seen.
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.addrs.get(kind).copied()
    }

    /// Every line captured so far on stdout and stderr (the last N with [`Spawn::keep_lines`]). After [`Child::wait`]
    /// or [`Child::stop`] returned, this holds everything the child wrote.
    pub fn output_lines(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The last `n` lines, indented, for an error message.
    pub fn last_output(&self, n: usize) -> String {
        self.output.tail(n)
    }

    /// Sends signal `sig` (e.g. `libc::SIGTERM`) unless the child has been reaped. `false` when it was not sent.
    pub fn signal(&self, sig: i32) -> bool {
        self.status.is_none() && self.handle.signal(sig)
    }

    /// The exit status if the child has exited (reaping it), without waiting for the rest of its output: for polling
    /// from synchronous code. Call [`Child::wait`] before reading the output of an exited child.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.process.try_wait()
        {
            self.reaped(status);
        }
        self.status
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        if let Some(registry) = &self.registry {
            registry.remove(self.pid);
        }
    }

    /// Waits up to `timeout` for the child to exit, then up to [`OUTPUT_DRAIN`] for the end of both pipes, so that
    /// [`Child::output_lines`] holds every line it wrote. `None` when it is still running after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match tokio::time::timeout(timeout, self.process.wait()).await {
                Ok(Ok(status)) => self.reaped(status),
                Ok(Err(_)) | Err(_) => return None,
            }
        }
        self.drain_output(OUTPUT_DRAIN).await;
        self.status
    }

    /// Waits up to `bound` for both reader tasks to reach end-of-file.
    async fn drain_output(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        for reader in &mut self.readers {
            // A finished JoinHandle must not be polled again.
            if !reader.is_finished() {
                let _ = tokio::time::timeout_at(deadline, reader).await;
            }
        }
    }

    /// SIGKILL, then reap (bounded) and read the rest of the output.
    pub async fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = self.process.start_kill();
        }
        self.wait(Duration::from_secs(5)).await
    }

    /// Stops the child as Kubernetes stops a pod: SIGTERM, up to `grace` to exit, then SIGKILL. Always reaps it and
    /// reads the rest of its output.
    pub async fn stop(&mut self, grace: Duration) -> StopOutcome {
        if let Some(status) = self.try_exited() {
            self.drain_output(OUTPUT_DRAIN).await;
            return StopOutcome::AlreadyExited(status.code());
        }
        self.signal(SIGTERM);
        match self.wait(grace).await {
            // Someone else's SIGKILL (a supervisor's kill switch) ended it during the grace.
            Some(status) if status.signal() == Some(SIGKILL) => StopOutcome::Killed,
            Some(status) => StopOutcome::Drained(status.code()),
            None => {
                self.kill_and_reap().await;
                StopOutcome::Killed
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // kill_on_drop sends SIGKILL and tokio reaps the process in the background.
        if let Some(registry) = &self.registry {
            registry.remove(self.pid);
        }
        for reader in &self.readers {
            reader.abort();
        }
    }
}
