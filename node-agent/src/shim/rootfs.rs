//! The container's root, built inside its own mount namespace so that nothing on this machine changes: a tmpfs root;
//! every top-level directory of the host as an overlay whose upper layer is the container's own (writes land in the
//! container's directory, never on the host); `/proc`, `/sys` and `/dev` as the host's; `/sys/fs/cgroup` mounted
//! afresh in the container's cgroup namespace, so the container sees its own limits as a container does; a private
//! `/run` and `/tmp`; `/etc` with the pod's `hosts`, `resolv.conf` and `hostname`; the volumes at their mount paths;
//! the program at [`PROGRAM_PATH`]. With `readOnlyRootFilesystem` everything but the volumes is remounted read-only.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::spec::Launch;
use super::{StartError, nix_step, step};
use crate::cgroup::{CgroupMount, cgroup_mounts};

/// Where the container's program is mounted (a private tmpfs path every user can traverse, so a non-root container
/// can run a program that lives under a directory only root may enter).
pub const PROGRAM_PATH: &str = "/run/autoscaling-lab/program";
/// Where the host's root stays visible while the container's root is built; unmounted before the program runs.
const HOST: &str = "/.autoscaling-lab-host";
/// Top-level host directories the container shares rather than overlays.
const SHARED: [&str; 3] = ["proc", "sys", "dev"];
/// Top-level directories the container gets fresh.
const PRIVATE: [&str; 4] = ["run", "tmp", "lost+found", ".autoscaling-lab-host"];

fn host(path: &Path) -> PathBuf {
    Path::new(HOST).join(path.strip_prefix("/").unwrap_or(path))
}

pub(super) fn build(launch: &Launch) -> Result<(), StartError> {
    let cgroup_mounts = host_cgroup_mounts();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(nix_step("make the mounts private"))?;
    let root = launch.root();
    fs::create_dir_all(&root).map_err(step("create the container's root"))?;
    mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(nix_step("mount the container's root"))?;
    fs::create_dir(root.join(HOST.trim_start_matches('/')))
        .map_err(step("create the host's mount point"))?;
    nix::unistd::pivot_root(&root, &root.join(HOST.trim_start_matches('/')))
        .map_err(nix_step("pivot_root"))?;
    nix::unistd::chdir("/").map_err(nix_step("chdir /"))?;

    let upper = |name: &str| host(&launch.dir.join("upper").join(name));
    let work = |name: &str| host(&launch.dir.join("work").join(name));
    let mut read_only_later: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(HOST).map_err(step("list the host's root"))? {
        let entry = entry.map_err(step("list the host's root"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if PRIVATE.contains(&name.as_str()) {
            continue;
        }
        let kind = entry.file_type().map_err(step("list the host's root"))?;
        let target = Path::new("/").join(&name);
        if kind.is_symlink() {
            let link = fs::read_link(entry.path()).map_err(step("copy a top-level link"))?;
            std::os::unix::fs::symlink(link, &target).map_err(step("copy a top-level link"))?;
        } else if kind.is_dir() {
            fs::create_dir(&target).map_err(step("create a top-level directory"))?;
            if SHARED.contains(&name.as_str()) {
                mount(
                    Some(&entry.path()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(nix_step("mount /proc, /sys or /dev"))?;
            } else {
                overlay(&entry.path(), &target, &upper(&name), &work(&name))?;
                read_only_later.push(target);
            }
        }
    }
    fs::create_dir("/run").map_err(step("create /run"))?;
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(nix_step("mount /run"))?;
    let tmp = host(&launch.dir.join("tmp"));
    fs::create_dir_all(&tmp).map_err(step("create /tmp"))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(step("create /tmp"))?;
    fs::create_dir("/tmp").map_err(step("create /tmp"))?;
    mount(
        Some(&tmp),
        "/tmp",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(nix_step("mount /tmp"))?;
    read_only_later.push("/tmp".into());
    read_only_later.push("/run".into());

    mount_cgroups(&cgroup_mounts)?;
    write_etc_files(launch)?;
    mount_program(&host(&launch.program))?;
    mount_volumes(launch)?;

    umount2(HOST, MntFlags::MNT_DETACH).map_err(nix_step("unmount the host's root"))?;
    fs::remove_dir(HOST).map_err(step("remove the host's mount point"))?;
    if launch.read_only_root {
        // A remount changes the top mount at a path: where a volume is mounted over a root directory (an emptyDir
        // at /tmp), that is the volume, which keeps its own flags.
        let volume_targets: BTreeSet<&Path> = launch
            .mounts
            .iter()
            .map(|m| Path::new(m.target.as_str()))
            .collect();
        for path in read_only_later {
            if !volume_targets.contains(path.as_path()) {
                remount_read_only(&path)?;
            }
        }
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(nix_step("readOnlyRootFilesystem"))?;
    }
    Ok(())
}

/// An overlay of `lower` at `target`, written into `upper`. Where the kernel refuses one (a lower file system an
/// overlay cannot sit on), the host's directory is bound read-only instead, and the container's log says so.
fn overlay(lower: &Path, target: &Path, upper: &Path, work: &Path) -> Result<(), StartError> {
    fs::create_dir_all(upper).map_err(step("create an overlay's upper layer"))?;
    fs::create_dir_all(work).map_err(step("create an overlay's work directory"))?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    if let Err(e) = mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    ) {
        eprintln!(
            "node-agent shim: {} is the host's, read-only (an overlay was refused: {e})",
            target.display()
        );
        mount(
            Some(lower),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(nix_step("bind a top-level directory"))?;
        remount_read_only(target)?;
    }
    Ok(())
}

fn remount_read_only(path: &Path) -> Result<(), StartError> {
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| StartError::Step {
        step: "remount read-only",
        source: io::Error::other(format!("{}: {e}", path.display())),
    })
}

/// The host's cgroup mounts, read before the root changes.
fn host_cgroup_mounts() -> Vec<CgroupMount> {
    cgroup_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// `/sys/fs/cgroup` as a container has it: each hierarchy mounted again (read-only) in the container's cgroup
/// namespace, whose root is the container's own group, so `memory.limit_in_bytes` there is the container's limit.
fn mount_cgroups(mounts: &[CgroupMount]) -> Result<(), StartError> {
    let base = Path::new("/sys/fs/cgroup");
    if mounts.is_empty() || !base.exists() {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    if let [only] = mounts
        && only.v2
        && only.mount_point == base
    {
        mount(Some("cgroup2"), base, Some("cgroup2"), flags, None::<&str>)
            .map_err(nix_step("mount cgroup2"))?;
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(nix_step("mount /sys/fs/cgroup"))?;
    for m in mounts {
        let Ok(relative) = m.mount_point.strip_prefix(base) else {
            continue;
        };
        let target = base.join(relative);
        fs::create_dir_all(&target).map_err(step("create a cgroup mount point"))?;
        let data = if !m.v2 && m.options.split(',').all(|o| o.starts_with("name=")) {
            format!("none,{}", m.options)
        } else {
            m.options.clone()
        };
        let data = (!data.is_empty()).then_some(data);
        mount(
            Some(m.fstype()),
            &target,
            Some(m.fstype()),
            flags,
            data.as_deref(),
        )
        .map_err(|e| StartError::Step {
            step: "mount a cgroup hierarchy",
            source: io::Error::other(format!("{} ({}): {e}", target.display(), m.options)),
        })?;
    }
    mount(
        None::<&str>,
        base,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(nix_step("remount /sys/fs/cgroup read-only"))?;
    Ok(())
}

/// The pod's `hosts`, `resolv.conf` and `hostname`, written into the container's `/etc` layer.
fn write_etc_files(launch: &Launch) -> Result<(), StartError> {
    for (name, content) in &launch.etc_files {
        let path = Path::new("/etc").join(name);
        // The host's may be a link (to a resolver's file under /run): the container's is a file of its own.
        if path.symlink_metadata().is_ok() {
            fs::remove_file(&path).map_err(step("replace a file in /etc"))?;
        }
        fs::write(&path, content).map_err(step("write a file in /etc"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(step("write a file in /etc"))?;
    }
    Ok(())
}

fn mount_program(program: &Path) -> Result<(), StartError> {
    let target = Path::new(PROGRAM_PATH);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(step("create the program's mount point"))?;
    }
    fs::File::create(target).map_err(step("create the program's mount point"))?;
    mount(
        Some(program),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| StartError::Step {
        step: "mount the program",
        source: io::Error::other(format!("{}: {e}", program.display())),
    })
}

/// Each volume at its mount path, parents first. A missing mount point is created in the container's own layers;
/// one under `/proc`, `/sys` or `/dev` that does not exist is refused (creating it would change the host).
fn mount_volumes(launch: &Launch) -> Result<(), StartError> {
    let mut mounts: Vec<_> = launch.mounts.iter().collect();
    mounts.sort_by_key(|m| Path::new(&m.target).components().count());
    for m in mounts {
        let target = Path::new(&m.target);
        let source = host(&m.source);
        let is_dir = source.is_dir();
        if !target.exists() {
            check_creatable(target)?;
            if is_dir {
                fs::create_dir_all(target).map_err(step("create a volume's mount point"))?;
            } else {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(step("create a volume's mount point"))?;
                }
                fs::File::create(target).map_err(step("create a volume's mount point"))?;
            }
        }
        let flags = if is_dir {
            MsFlags::MS_BIND | MsFlags::MS_REC
        } else {
            MsFlags::MS_BIND
        };
        mount(Some(&source), target, None::<&str>, flags, None::<&str>).map_err(|e| {
            StartError::Step {
                step: "mount a volume",
                source: io::Error::other(format!("{} at {}: {e}", source.display(), m.target)),
            }
        })?;
        if m.read_only {
            remount_read_only(target)?;
        }
    }
    Ok(())
}

fn check_creatable(target: &Path) -> Result<(), StartError> {
    let mut existing = target;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let real = fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    let top: BTreeSet<&str> = real
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .take(1)
        .collect();
    if top.iter().any(|t| SHARED.contains(t)) {
        return Err(StartError::Step {
            step: "create a volume's mount point",
            source: io::Error::other(format!(
                "{} does not exist and is under the host's {} (the node agent creates nothing there)",
                target.display(),
                real.display()
            )),
        });
    }
    Ok(())
}
