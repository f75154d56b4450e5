//! Where the lab finds its children's binaries, how it spawns them: the `procs` child-process type (shared with
//! the tests) with the lab's settings. Every child is registered, so that no path out of the lab leaves one running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{LabArgs, LabError};

/// SIGSTOP and SIGCONT, the signals a freeze sends (through pidfds: `procs::Child::signal`).
pub(crate) const SIGSTOP: i32 = 19;
pub(crate) const SIGCONT: i32 = 18;
/// How many output lines of a child are kept for error messages (a replica logs for as long as it runs).
const KEPT_LINES: usize = 200;
/// How many of them a start error quotes.
const QUOTED_LINES: usize = 15;

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

/// A child of the lab: named `name`, tracked in `registry`, awaited until it logs `listening` for `kinds`.
pub fn child(
    name: &str,
    program: &Path,
    args: &[String],
    kinds: &[&str],
    timeout: Duration,
    registry: &procs::Registry,
) -> procs::Spawn {
    procs::Spawn::new(program)
        .name(name)
        .args(args)
        .listening(kinds, timeout)
        .keep_lines(KEPT_LINES)
        .quote_lines(QUOTED_LINES)
        .register(registry)
}

/// The binaries to spawn, checked before anything starts.
pub(crate) struct Binaries {
    pub(crate) scaler: PathBuf,
    pub(crate) consumer: PathBuf,
}

impl Binaries {
    pub(crate) fn locate(args: &LabArgs) -> Result<Binaries, LabError> {
        let found = |explicit: Option<&std::path::Path>, name: &str, flag: &str| {
            let path = locate_binary(explicit, name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(LabError::Usage(format!(
                    "{name} binary not found at {} (build it with `cargo build -p {name}`, or pass {flag})",
                    path.display()
                )))
            }
        };
        Ok(Binaries {
            scaler: found(args.scaler_bin.as_deref(), "scaler", "--scaler-bin")?,
            consumer: found(args.consumer_bin.as_deref(), "consumer", "--consumer-bin")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_binary_wins_and_the_default_sits_beside_the_executable() {
        assert_eq!(
            locate_binary(Some(Path::new("/opt/consumer")), "consumer"),
            PathBuf::from("/opt/consumer")
        );
        let found = locate_binary(None, "no-such-binary");
        let exe_dir = std::env::current_exe().unwrap();
        assert_eq!(found.parent(), exe_dir.parent());
        assert!(found.ends_with("no-such-binary"));
    }

    #[tokio::test]
    async fn a_child_is_registered_until_it_is_stopped() {
        let registry = procs::Registry::new();
        let script = r#"echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:1"}}'; exec sleep 30"#;
        let mut started = child(
            "fake",
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &[contract::listening::kind::HTTP],
            Duration::from_secs(10),
            &registry,
        )
        .start()
        .await
        .expect("started");
        assert_eq!(registry.live(), vec![(started.pid(), "fake".to_string())]);
        started.stop(Duration::from_secs(5)).await;
        assert!(registry.live().is_empty());
    }
}
