//! Commands on this machine: iproute2's `ip` and nftables' `nft`, each run to completion with its stderr kept, so
//! that a failure names the command and what it said. Both tools are what an operator would use by hand, and what the
//! clean-up runs too.

use std::ffi::OsStr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

/// A host command that failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct CommandError {
    pub command: String,
    pub message: String,
}

fn line<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    std::iter::once(program.to_string())
        .chain(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args`, optionally feeding `stdin`; its stdout on success.
pub async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, CommandError> {
    let command = line(program, args);
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CommandError {
            command: command.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{program} is not installed (Debian: apt-get install {})",
                    package_of(program)
                )
            } else {
                e.to_string()
            },
        })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .await
            .map_err(|e| CommandError {
                command: command.clone(),
                message: format!("writing its input: {e}"),
            })?;
    }
    let output = child.wait_with_output().await.map_err(|e| CommandError {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(CommandError {
            command,
            message: if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            },
        })
    }
}

/// The Debian package of a tool the cluster runs.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        "ip" | "bridge" => "iproute2",
        _ => "the package that provides it",
    }
}

/// `ip ARGS`.
pub async fn ip(args: &[&str]) -> Result<String, CommandError> {
    run("ip", args, None).await
}

/// `ip -n NETNS ARGS`.
pub async fn ip_in(netns: &str, args: &[&str]) -> Result<String, CommandError> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("ip", &all, None).await
}

/// `sysctl -qw KEY=VALUE` inside a named network namespace (its own network settings).
pub async fn sysctl_in(netns: &str, settings: &[&str]) -> Result<(), CommandError> {
    let mut all = vec!["netns", "exec", netns, "sysctl", "-qw"];
    all.extend_from_slice(settings);
    run("ip", &all, None).await.map(drop)
}

/// `nft -f -` with `script`, optionally inside a named network namespace.
pub async fn nft(netns: Option<&str>, script: &str) -> Result<String, CommandError> {
    match netns {
        Some(ns) => run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).await,
        None => run("nft", &["-f", "-"], Some(script)).await,
    }
}

/// `nft ARGS`, optionally inside a named network namespace.
pub async fn nft_args(netns: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
    match netns {
        Some(ns) => {
            let mut all = vec!["netns", "exec", ns, "nft"];
            all.extend_from_slice(args);
            run("ip", &all, None).await
        }
        None => run("nft", args, None).await,
    }
}

/// The named network namespaces on this machine (`ip netns list`, names only).
pub fn netns_names() -> Vec<String> {
    std::fs::read_dir(crate::isolate::NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Removes a file or a directory tree; one that is already gone is removed.
pub fn remove_path(path: &std::path::Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| {
            std::io::Error::new(e.kind(), format!("removing {}: {e}", path.display()))
        }),
    }
}
