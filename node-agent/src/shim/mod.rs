//! `node-agent shim SPEC`: the container runtime's last step, run as a fresh single-threaded process between the
//! agent's spawn and the container's program. It does what a runtime does to a container process, in this order:
//! parent-death signal, the container's cgroups, the pod's network namespace, new mount, UTS and cgroup namespaces,
//! the container's root (see [`rootfs`]), hostname, no_new_privs, groups, gid, uid, working directory, then `exec`.
//! The program's stdout and stderr are the shim's, which the agent reads into the container's log. When a step fails
//! the shim writes why to the start-error file and exits with [`START_ERROR_EXIT`], as a runtime reports
//! `StartError`.

pub mod rootfs;
pub mod spec;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

use crate::isolate;
pub use spec::{ExecInto, Launch, Mount};

/// The shim's exit code when it could not start the program (containerd reports 128 for a failed start).
pub const START_ERROR_EXIT: i32 = 128;

/// Runs the shim for the launch spec at `spec_path`; returns only on failure (the exit code to use).
pub fn run(spec_path: &Path) -> i32 {
    let launch: Launch = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("node-agent shim: cannot read {}: {e}", spec_path.display());
            return START_ERROR_EXIT;
        }
    };
    // Opened before the root changes: the file stays writable through this handle afterwards.
    let mut error_file = std::fs::File::create(&launch.start_error_file).ok();
    let error = start(&launch);
    let message = error.to_string();
    if let Some(file) = error_file.as_mut() {
        let _ = file.write_all(message.as_bytes());
    }
    eprintln!("node-agent shim: {message}");
    START_ERROR_EXIT
}

/// Why the container's program did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("exec {program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
}

fn step(step: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Step { step, source }
}

fn nix_step(step: &'static str) -> impl FnOnce(nix::Error) -> StartError {
    move |e| StartError::Step {
        step,
        source: std::io::Error::from(e),
    }
}

/// Every step up to `exec`; returns only the error that stopped it.
fn start(launch: &Launch) -> StartError {
    match prepare(launch) {
        Err(e) => e,
        Ok(()) => {
            let mut command = std::process::Command::new(rootfs::PROGRAM_PATH);
            command
                .arg0(&launch.argv0)
                .args(&launch.args)
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&launch.working_dir);
            StartError::Exec {
                program: launch.argv0.clone(),
                source: command.exec(),
            }
        }
    }
}

/// Runs `node-agent shim-exec SPEC`: enters a running container and execs a command there; returns only on failure.
pub fn exec_into(spec_path: &Path) -> i32 {
    let spec: ExecInto = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!(
                "node-agent shim-exec: cannot read {}: {e}",
                spec_path.display()
            );
            return START_ERROR_EXIT;
        }
    };
    let error = match enter(&spec) {
        Err(e) => e,
        Ok(()) => {
            let Some((program, args)) = spec.command.split_first() else {
                eprintln!("node-agent shim-exec: no command");
                return START_ERROR_EXIT;
            };
            let mut command = std::process::Command::new(program);
            command
                .args(args)
                .env_clear()
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&spec.working_dir);
            StartError::Exec {
                program: program.clone(),
                source: command.exec(),
            }
        }
    };
    eprintln!("node-agent shim-exec: {error}");
    START_ERROR_EXIT
}

fn enter(spec: &ExecInto) -> Result<(), StartError> {
    isolate::die_with_parent().map_err(step("parent-death signal"))?;
    isolate::join_cgroups(&spec.cgroup_procs).map_err(step("join the container's cgroups"))?;
    // Every namespace file is opened before the first is entered: entering the mount namespace changes what
    // /proc/PID names.
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{}/ns/{ns}", spec.target_pid))
            .map_err(step("open the container's namespaces"))
    };
    let namespaces = [
        (open("net")?, CloneFlags::CLONE_NEWNET),
        (open("uts")?, CloneFlags::CLONE_NEWUTS),
        (open("cgroup")?, CloneFlags::CLONE_NEWCGROUP),
        (open("mnt")?, CloneFlags::CLONE_NEWNS),
    ];
    for (file, kind) in &namespaces {
        nix::sched::setns(file, *kind).map_err(nix_step("enter the container's namespaces"))?;
    }
    set_identity(spec.uid, spec.gid, &spec.supplemental_groups)
}

fn set_identity(
    uid: Option<u32>,
    gid: Option<u32>,
    supplemental: &[u32],
) -> Result<(), StartError> {
    if uid.is_some() || gid.is_some() {
        let groups: Vec<Gid> = gid
            .into_iter()
            .chain(supplemental.iter().copied())
            .map(Gid::from_raw)
            .collect();
        nix::unistd::setgroups(&groups).map_err(nix_step("supplemental groups"))?;
        if let Some(gid) = gid {
            nix::unistd::setgid(Gid::from_raw(gid)).map_err(nix_step("runAsGroup"))?;
        }
        if let Some(uid) = uid {
            nix::unistd::setuid(Uid::from_raw(uid)).map_err(nix_step("runAsUser"))?;
        }
        // Changing credentials cleared the parent-death signal.
        isolate::die_with_parent().map_err(step("parent-death signal after dropping root"))?;
    }
    Ok(())
}

fn prepare(launch: &Launch) -> Result<(), StartError> {
    isolate::die_with_parent().map_err(step("parent-death signal"))?;
    isolate::join_cgroups(&launch.cgroup_procs).map_err(step("join the container's cgroups"))?;
    if let Some(netns) = &launch.netns {
        isolate::enter_netns(netns).map_err(step("enter the pod's network namespace"))?;
    }
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(nix_step("new mount, UTS and cgroup namespaces"))?;
    rootfs::build(launch)?;
    nix::unistd::sethostname(&launch.hostname).map_err(nix_step("hostname"))?;
    if launch.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(nix_step("no_new_privs"))?;
    }
    set_identity(launch.uid, launch.gid, &launch.supplemental_groups)
}
