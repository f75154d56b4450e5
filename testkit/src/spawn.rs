//! Spawning the workspace's binaries in tests: a thin layer over [`procs::Child`] (the same child-process type the
//! lab uses at run time) with the tests' defaults: the whole output kept, no inherited OTLP endpoint, a 30 s bound on
//! `listening`.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use crate::Error;

/// How long a spawned binary may take to log that it is listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process, killed on drop, whose stdout and stderr lines are all captured.
#[derive(Debug)]
pub struct Spawned {
    child: procs::Child,
}

impl Spawned {
    /// Spawns `program` and waits until it has logged a `listening` event for every kind in `kinds`.
    pub async fn start(
        program: impl AsRef<OsStr>,
        args: &[&str],
        envs: &[(&str, &str)],
        kinds: &[&str],
    ) -> Result<Spawned, Error> {
        let mut spawn = procs::Spawn::new(program)
            .args(args)
            // An inherited collector endpoint would make every spawned binary export; tests opt in through `envs`.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .listening(kinds, LISTEN_TIMEOUT);
        for (key, value) in envs {
            spawn = spawn.env(key, value);
        }
        let child = spawn.start().await.map_err(|source| match source {
            procs::Error::Spawn { .. } => Error::Spawn { source },
            other => Error::Process(other),
        })?;
        Ok(Spawned { child })
    }

    /// The address logged for `kind`. Panics when that kind was not awaited in `start`.
    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.child.addr(kind).unwrap_or_else(|| {
            panic!(
                "{} logged no `listening` for kind {kind}",
                self.child.name()
            )
        })
    }

    /// `http://ADDR` for `kind`.
    pub fn url(&self, kind: &str) -> String {
        format!("http://{}", self.addr(kind))
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends a signal such as `libc::SIGTERM` to the child (nothing once it has been reaped).
    pub fn signal(&self, sig: i32) {
        self.child.signal(sig);
    }

    /// Waits for the child to exit, at most `timeout`, and then for the end of its output, so that
    /// [`Spawned::output_lines`] holds every line it wrote before exiting.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait(timeout).await
    }

    /// Every stdout and stderr line seen so far (after [`Spawned::wait_exit`]: every line).
    pub fn output_lines(&self) -> Vec<String> {
        self.child.output_lines()
    }

    /// The child-process handle, for what this layer does not cover (SIGTERM-then-SIGKILL stops, for one).
    pub fn child_mut(&mut self) -> &mut procs::Child {
        &mut self.child
    }
}

/// The pids of the live children of `parent`, from /proc (for checking that a supervisor leaves none behind).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command name: state, then the parent's pid.
                    let rest = stat.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .filter(|pid| !procs::is_gone(*pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spawned_childs_last_lines_are_captured_once_it_exited() {
        let script = r#"echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:9"}}'
read line
i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; echo drained >&2"#;
        // stdin is /dev/null: `read` returns at once and the script runs to its end.
        let mut spawned = Spawned::start("/bin/sh", &["-c", script], &[], &["http"])
            .await
            .expect("started");
        assert_eq!(spawned.url("http"), "http://127.0.0.1:9");
        let status = spawned
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits");
        assert!(status.success());
        let lines = spawned.output_lines();
        assert_eq!(lines.len(), 502, "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some("drained"));
    }

    #[tokio::test]
    async fn children_of_lists_live_children_only() {
        let mut spawned = Spawned::start("/bin/sh", &["-c", "exec sleep 30"], &[], &[])
            .await
            .expect("started");
        assert!(children_of(std::process::id()).contains(&spawned.pid()));
        spawned.signal(9);
        spawned
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("killed");
        assert!(!children_of(std::process::id()).contains(&spawned.pid()));
    }

    #[tokio::test]
    async fn failures_name_the_program_and_why() {
        let err = Spawned::start("/nonexistent/scaler", &[], &[], &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/scaler") && err.contains("cargo build"),
            "{err}"
        );
        let err = Spawned::start("/bin/sh", &["-c", "echo nope; exit 4"], &[], &["http"])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit status: 4") && err.contains("nope"),
            "{err}"
        );
    }
}
