//! Cgroups for pods and the cluster's own processes: one directory per group in each hierarchy the limits need
//! (cgroup v1: `cpu`, `cpuacct`, `memory`; cgroup v2: the unified tree), created under the cgroup this process was
//! started in and named after the project, so nothing outside the project's directory is touched. A group enforces a
//! memory limit (the kernel OOM-kills inside it) and a CPU quota (CFS bandwidth: the group throttles at its limit),
//! reports its CPU time, memory working set and OOM kills, and can kill every process left in it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

mod group;

pub use group::{Group, Limits, cfs_quota, cpu_shares, cpu_weight};

/// The CFS period the quota is a share of (the kubelet's default, 100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;

/// Which cgroup version this machine mounts, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: one mount per controller; `dirs` are `<mount>/<this process's path in it>`.
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
    },
    /// cgroup v2: the unified tree; `dir` is `<mount>/<this process's path>`.
    V2 { dir: PathBuf },
}

/// Why cgroups cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy: need cgroup v1 with the cpu, cpuacct and memory controllers, or cgroup v2 with cpu and memory ({0})"
    )]
    Unsupported(String),
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Hierarchy {
    /// Finds the hierarchies from `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| CgroupError::Unsupported(format!("/proc/self/mountinfo: {e}")))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| CgroupError::Unsupported(format!("/proc/self/cgroup: {e}")))?;
        Hierarchy::from_proc(&mountinfo, &own)
    }

    /// [`Hierarchy::detect`] from the two files' contents.
    pub fn from_proc(mountinfo: &str, own_cgroup: &str) -> Result<Hierarchy, CgroupError> {
        let mounts = cgroup_mounts(mountinfo);
        let v1_mount = |controller: &str| {
            mounts
                .iter()
                .find(|m| !m.v2 && m.options.split(',').any(|o| o == controller))
                .map(|m| m.mount_point.clone())
        };
        let own_path = |controller: Option<&str>| {
            own_cgroup.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let matches = match controller {
                    Some(c) => controllers.split(',').any(|x| x == c),
                    None => controllers.is_empty(),
                };
                matches.then(|| path.trim_start_matches('/').to_string())
            })
        };
        if let (Some(cpu), Some(cpuacct), Some(memory)) =
            (v1_mount("cpu"), v1_mount("cpuacct"), v1_mount("memory"))
        {
            let under = |mount: PathBuf, controller: &str| {
                own_path(Some(controller)).map(|p| mount.join(p))
            };
            if let (Some(cpu), Some(cpuacct), Some(memory)) = (
                under(cpu, "cpu"),
                under(cpuacct, "cpuacct"),
                under(memory, "memory"),
            ) {
                return Ok(Hierarchy::V1 {
                    cpu,
                    cpuacct,
                    memory,
                });
            }
        }
        if let Some(v2) = mounts.iter().find(|m| m.v2) {
            let controllers =
                fs::read_to_string(v2.mount_point.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            if has("cpu")
                && has("memory")
                && let Some(path) = own_path(None)
            {
                return Ok(Hierarchy::V2 {
                    dir: v2.mount_point.join(path),
                });
            }
        }
        Err(CgroupError::Unsupported(format!(
            "cgroup mounts found: {}",
            if mounts.is_empty() {
                "none".to_string()
            } else {
                mounts
                    .iter()
                    .map(|m| m.mount_point.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }

    /// The hierarchy above the project's own directory: when this process runs inside `<project_dir>/...` (the
    /// node agent in the supervisor's `control-plane/node-agent` group), the groups it creates are the project's
    /// siblings of its own, not children of it.
    pub fn outside(&self, project_dir: &str) -> Hierarchy {
        let strip = |path: &Path| -> PathBuf {
            let components: Vec<_> = path.components().collect();
            match components.iter().position(|c| c.as_os_str() == project_dir) {
                Some(i) => components[..i].iter().collect(),
                None => path.to_path_buf(),
            }
        };
        match self {
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
            } => Hierarchy::V1 {
                cpu: strip(cpu),
                cpuacct: strip(cpuacct),
                memory: strip(memory),
            },
            Hierarchy::V2 { dir } => Hierarchy::V2 { dir: strip(dir) },
        }
    }

    /// The group at `relative` (e.g. `autoscaling-lab-local/pods/<uid>/<container>`) under this process's cgroups.
    pub fn group(&self, relative: &Path) -> Group {
        match self {
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
            } => Group::V1 {
                cpu: cpu.join(relative),
                cpuacct: cpuacct.join(relative),
                memory: memory.join(relative),
            },
            Hierarchy::V2 { dir } => Group::V2 {
                base: dir.clone(),
                dir: dir.join(relative),
            },
        }
    }
}

/// A cgroup hierarchy as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// Its super options without `rw`/`ro`: the controllers (v1, e.g. `cpu,cpuacct`) or the v2 mount options.
    pub options: String,
    pub v2: bool,
}

impl CgroupMount {
    pub fn fstype(&self) -> &'static str {
        if self.v2 { "cgroup2" } else { "cgroup" }
    }
}

/// The cgroup hierarchies a mountinfo text lists.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional...] - fstype source super-options`
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split_whitespace().nth(4)?;
            let mut after = after.split_whitespace();
            let fstype = after.next()?;
            let _source = after.next();
            let super_options = after.next().unwrap_or_default();
            match fstype {
                "cgroup" | "cgroup2" => Some(CgroupMount {
                    mount_point: PathBuf::from(unescape_mount(mount_point)),
                    options: super_options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro"))
                        .collect::<Vec<_>>()
                        .join(","),
                    v2: fstype == "cgroup2",
                }),
                _ => None,
            }
        })
        .collect()
}

/// mountinfo escapes spaces and a few others as `\ooo`.
fn unescape_mount(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(b) => out.push(char::from(b)),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V1_SELF: &str = "4:memory:/process_api/b535\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn mounts_keep_the_controllers_and_unescape_the_path() {
        let mounts = cgroup_mounts(
            "31 30 0:27 / /sys/fs/cgroup/cpu\\040x rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
             40 30 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n\
             41 30 0:37 / /tmp rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu x"));
        assert_eq!(mounts[0].options, "cpu,cpuacct");
        assert_eq!(mounts[0].fstype(), "cgroup");
        assert!(mounts[1].v2);
        assert_eq!(mounts[1].options, "nsdelegate");
    }

    #[test]
    fn v1_is_found_under_this_process_own_groups() {
        let h = Hierarchy::from_proc(V1_MOUNTINFO, V1_SELF).unwrap();
        assert_eq!(
            h,
            Hierarchy::V1 {
                cpu: "/sys/fs/cgroup/cpu/".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct/".into(),
                memory: "/sys/fs/cgroup/memory/process_api/b535".into(),
            }
        );
        let group = h.group(Path::new("autoscaling-lab-local/pods/u1/c"));
        assert_eq!(
            group.procs_files()[2],
            PathBuf::from(
                "/sys/fs/cgroup/memory/process_api/b535/autoscaling-lab-local/pods/u1/c/cgroup.procs"
            )
        );
    }

    #[test]
    fn groups_made_inside_the_project_directory_go_beside_it() {
        let inside = Hierarchy::from_proc(
            V1_MOUNTINFO,
            "4:memory:/process_api/b535/autoscaling-lab-local/control-plane/node-agent\n2:cpuacct:/autoscaling-lab-local/control-plane/node-agent\n1:cpu:/autoscaling-lab-local/control-plane/node-agent\n",
        )
        .unwrap();
        assert_eq!(
            inside.outside("autoscaling-lab-local"),
            Hierarchy::V1 {
                cpu: "/sys/fs/cgroup/cpu".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                memory: "/sys/fs/cgroup/memory/process_api/b535".into(),
            }
        );
    }

    #[test]
    fn no_cgroup_mount_is_a_clear_error() {
        let err =
            Hierarchy::from_proc("1 0 8:1 / / rw - ext4 /dev/vda rw\n", "0::/\n").unwrap_err();
        assert!(
            err.to_string().contains("no usable cgroup hierarchy"),
            "{err}"
        );
    }
}
