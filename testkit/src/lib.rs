//! Test support for the lab's integration tests: spawn the lab's binaries and learn their ephemeral ports from the
//! `listening` log line, run a real Prometheus on 127.0.0.1, and await readiness instead of sleeping. [`kafka`] runs a
//! real Kafka broker (scripts/kafka/broker.sh) and sets up known offsets.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub mod kafka;
pub mod otlp;

/// How long a spawned binary may take to log that it is listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test fixture could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start {program}: {source} (did `cargo build` / scripts/setup.sh run?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "{program} did not log `listening` for {missing:?} within {timeout:?}; output so far:\n{output}"
    )]
    NotListening {
        program: String,
        missing: Vec<String>,
        timeout: Duration,
        output: String,
    },
    #[error("{url} did not answer 2xx within {timeout:?}: {last}")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("prometheus query `{query}` failed: {reason}")]
    Query { query: String, reason: String },
    #[error(
        "prometheus query `{query}` did not satisfy the condition within {timeout:?}; last result: {last}"
    )]
    Condition {
        query: String,
        timeout: Duration,
        last: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// Path of a workspace binary in the debug target dir. `cargo test --workspace` builds every binary before any test runs;
/// `CARGO_TARGET_DIR` is honoured.
pub fn bin_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}

/// A child process, killed on drop, whose output lines are captured.
pub struct Spawned {
    program: String,
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("program", &self.program)
            .field("pid", &self.child.id())
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Spawned {
    /// Spawns `program` and waits until it has logged a `listening` event for every kind in `kinds`.
    pub async fn start(
        program: impl AsRef<OsStr>,
        args: &[&str],
        envs: &[(&str, &str)],
        kinds: &[&str],
    ) -> Result<Spawned, Error> {
        let program_name = program.as_ref().to_string_lossy().into_owned();
        let mut command = Command::new(program.as_ref());
        command
            .args(args)
            // An inherited collector endpoint would make every spawned binary export; tests opt in through `envs`.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            program: program_name.clone(),
            source,
        })?;

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (listen_tx, mut listen_rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(capture(stdout, lines.clone(), Some(listen_tx.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(capture(stderr, lines.clone(), Some(listen_tx)));
        }

        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        while kinds.iter().any(|kind| !addrs.contains_key(*kind)) {
            match tokio::time::timeout_at(deadline, listen_rx.recv()).await {
                Ok(Some((kind, addr))) => {
                    addrs.insert(kind, addr);
                }
                Ok(None) | Err(_) => {
                    let missing = kinds
                        .iter()
                        .filter(|kind| !addrs.contains_key(**kind))
                        .map(|kind| kind.to_string())
                        .collect();
                    let output = lines.lock().expect("lines lock").join("\n");
                    return Err(Error::NotListening {
                        program: program_name,
                        missing,
                        timeout: LISTEN_TIMEOUT,
                        output,
                    });
                }
            }
        }
        Ok(Spawned {
            program: program_name,
            child,
            addrs,
            lines,
        })
    }

    /// The address logged for `kind`. Panics when that kind was not awaited in `start`.
    pub fn addr(&self, kind: &str) -> SocketAddr {
        *self
            .addrs
            .get(kind)
            .unwrap_or_else(|| panic!("{} logged no `listening` for kind {kind}", self.program))
    }

    /// `http://ADDR` for `kind`.
    pub fn url(&self, kind: &str) -> String {
        format!("http://{}", self.addr(kind))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a signal such as `libc::SIGTERM` to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.child.id() {
            signal_pid(pid, sig);
        }
    }

    /// Waits for the child to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Every stdout and stderr line seen so far.
    pub fn output_lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }
}

fn signal_pid(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // `kill` has no memory-safety preconditions; the workspace denies `unsafe` everywhere else, so go through the
    // `kill` command rather than libc to keep this crate free of unsafe code.
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

async fn capture(
    stream: impl AsRead,
    lines: Arc<Mutex<Vec<String>>>,
    listen_tx: Option<mpsc::UnboundedSender<(String, SocketAddr)>>,
) {
    let mut reader = BufReader::new(stream).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        if let (Some(tx), Some(found)) = (&listen_tx, parse_listening(&line)) {
            let _ = tx.send(found);
        }
        lines.lock().expect("lines lock").push(line);
    }
}

trait AsRead: AsyncRead + Unpin + Send + 'static {}
impl<T: AsyncRead + Unpin + Send + 'static> AsRead for T {}

/// Parses a JSON log line with `fields.message == "listening"`, `fields.kind` and `fields.addr`.
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

/// Polls `url` until it answers 2xx, at most `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!("status {}", resp.status()),
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotReady {
                url: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `url` until `pred` accepts its JSON body, at most `timeout`; the answer that satisfied it is returned.
/// For waiting on a service's own state (jobs, workers) instead of sleeping.
pub async fn poll_json(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) => match resp.json::<serde_json::Value>().await {
                Ok(body) if pred(&body) => return Ok(body),
                Ok(body) => body.to_string(),
                Err(err) => err.to_string(),
            },
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Condition {
                query: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 with temporary storage, scraping `targets` as
/// job `consumer`. Killed on drop.
pub struct Prometheus {
    pub url: String,
    _process: Spawned,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .finish()
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `scrape_interval` and waits for `/-/ready`.
    pub async fn start(
        targets: &[SocketAddr],
        scrape_interval: Duration,
    ) -> Result<Prometheus, Error> {
        let dir = tempfile::tempdir()?;
        let interval = format!("{}ms", scrape_interval.as_millis().max(100));
        let target_list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: consumer\n    scrape_interval: {interval}\n    scrape_timeout: {interval}\n\
             \x20   static_configs:\n      - targets: [{target_list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;

        // Prometheus cannot report an ephemeral port, so take a free one and retry on the rare collision.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port();
            let listen = format!("--web.listen-address=127.0.0.1:{port}");
            let storage = format!("--storage.tsdb.path={}", dir.path().join("data").display());
            let config_arg = format!("--config.file={}", config_path.display());
            let spawned = Spawned::start(
                prometheus_binary(),
                &[
                    &config_arg,
                    &storage,
                    &listen,
                    "--log.level=warn",
                    "--web.enable-lifecycle",
                ],
                &[],
                &[],
            )
            .await?;
            let url = format!("http://127.0.0.1:{port}");
            match wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(20)).await {
                Ok(()) => {
                    return Ok(Prometheus {
                        url,
                        _process: spawned,
                        _dir: dir,
                        client: reqwest::Client::new(),
                    });
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Runs an instant query and returns the `data.result` array.
    pub async fn query(&self, promql: &str) -> Result<serde_json::Value, Error> {
        let fail = |reason: String| Error::Query {
            query: promql.to_string(),
            reason,
        };
        let resp = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body: serde_json::Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        if body["status"] != "success" {
            return Err(fail(body.to_string()));
        }
        Ok(body["data"]["result"].clone())
    }

    /// Re-runs `promql` until `pred` accepts its result, at most `timeout`.
    pub async fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let result = self.query(promql).await?;
            if pred(&result) {
                return Ok(result);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Condition {
                    query: promql.to_string(),
                    timeout,
                    last: result.to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn prometheus_binary() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// A port that was free a moment ago on 127.0.0.1. Only for programs that cannot take port 0 themselves.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_json_listening_line() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening","kind":"grpc","addr":"127.0.0.1:4321"},"target":"scaler"}"#;
        let (kind, addr) = parse_listening(line).expect("a listening line");
        assert_eq!(kind, "grpc");
        assert_eq!(addr, "127.0.0.1:4321".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn ignores_other_lines() {
        assert!(parse_listening("plain text").is_none());
        assert!(
            parse_listening(r#"{"fields":{"message":"ready","kind":"http","addr":"127.0.0.1:1"}}"#)
                .is_none()
        );
    }

    #[tokio::test]
    async fn prometheus_starts_and_scrapes_itself_or_reports_why() {
        if !prometheus_binary().exists() {
            panic!("prometheus is not installed: run scripts/setup.sh");
        }
        let prom = Prometheus::start(&[], Duration::from_millis(500))
            .await
            .expect("prometheus");
        let result = prom.query("vector(1)").await.expect("query");
        assert_eq!(result[0]["value"][1], "1");
    }
}
