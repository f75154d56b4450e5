//! Cgroups for pods and the cluster's own processes: one directory per group in each hierarchy the limits need
//! (cgroup v1: `cpu`, `cpuacct`, `memory`; cgroup v2: the unified tree), created under the cgroup this process was
//! started in and named after the project, so nothing outside the project's directory is touched. A group enforces a
//! memory limit (the kernel OOM-kills inside it) and a CPU quota (CFS bandwidth: the group throttles at its limit),
//! reports its CPU time, memory working set and OOM kills, and can kill every process left in it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        let mounts = parse_cgroup_mounts(mountinfo);
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

struct CgroupMount {
    mount_point: PathBuf,
    options: String,
    v2: bool,
}

fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
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
                    options: super_options.to_string(),
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

/// Limits a group enforces. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU limit in millicores (quota = millicores × period / 1000).
    pub cpu_millis: Option<u64>,
    /// CPU request in millicores: the group's share when CPU is contended.
    pub cpu_request_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// One group: a directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
    },
    V2 {
        /// This process's own group: the directories below it are the project's.
        base: PathBuf,
        dir: PathBuf,
    },
}

impl Group {
    fn dirs(&self) -> Vec<&Path> {
        match self {
            Group::V1 {
                cpu,
                cpuacct,
                memory,
            } => vec![cpu, cpuacct, memory],
            Group::V2 { dir, .. } => vec![dir],
        }
    }

    /// The directories a process writes its pid into to join (every hierarchy's).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Creates the directories (and their parents).
    pub fn create(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if let Group::V2 { base, dir } = self {
            // A v2 group gets the cpu and memory controllers only when every parent up to this process's own group
            // delegates them; the own group holds processes, so the kernel may refuse, and that is said plainly.
            let mut parents: Vec<&Path> = dir
                .ancestors()
                .skip(1)
                .take_while(|p| p.starts_with(base))
                .collect();
            parents.reverse();
            for parent in parents {
                let control = parent.join("cgroup.subtree_control");
                let enabled = fs::read_to_string(&control).unwrap_or_default();
                if enabled.split_whitespace().any(|c| c == "cpu")
                    && enabled.split_whitespace().any(|c| c == "memory")
                {
                    continue;
                }
                fs::write(&control, "+cpu +memory").map_err(|e| {
                    CgroupError::Unsupported(format!(
                        "cgroup v2: cannot delegate cpu and memory below {} ({e}); start the cluster in a cgroup of \
                         its own, e.g. `systemd-run --scope -p Delegate=yes make cluster`",
                        parent.display()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// Writes the limits; a group with no limit keeps the kernel's "max".
    pub fn set_limits(&self, limits: Limits) -> Result<(), CgroupError> {
        match self {
            Group::V1 { cpu, memory, .. } => {
                if let Some(millis) = limits.cpu_millis {
                    write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                    write(
                        &cpu.join("cpu.cfs_quota_us"),
                        &cfs_quota(millis).to_string(),
                    )?;
                }
                if let Some(request) = limits.cpu_request_millis.or(limits.cpu_millis) {
                    write(&cpu.join("cpu.shares"), &cpu_shares(request).to_string())?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // With swap accounting on, the limit also covers swap, so the limit is really the limit.
                    let memsw = memory.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes.to_string())?;
                    }
                }
            }
            Group::V2 { dir, .. } => {
                if let Some(millis) = limits.cpu_millis {
                    write(
                        &dir.join("cpu.max"),
                        &format!("{} {CFS_PERIOD_US}", cfs_quota(millis)),
                    )?;
                }
                if let Some(request) = limits.cpu_request_millis.or(limits.cpu_millis) {
                    write(&dir.join("cpu.weight"), &cpu_weight(request).to_string())?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The pids in the group (the memory hierarchy's on v1: every process of the group is in all three).
    pub fn pids(&self) -> Vec<u32> {
        let file = match self {
            Group::V1 { memory, .. } => memory.join("cgroup.procs"),
            Group::V2 { dir, .. } => dir.join("cgroup.procs"),
        };
        let mut pids: Vec<u32> = fs::read_to_string(file)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        // Processes of child groups belong to this group too.
        for child in self.children() {
            pids.extend(child.pids());
        }
        pids
    }

    fn children(&self) -> Vec<Group> {
        let subdirs = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        match self {
            Group::V1 {
                cpu,
                cpuacct,
                memory,
            } => subdirs(memory)
                .into_iter()
                .map(|name| Group::V1 {
                    cpu: cpu.join(&name),
                    cpuacct: cpuacct.join(&name),
                    memory: memory.join(&name),
                })
                .collect(),
            Group::V2 { base, dir } => subdirs(dir)
                .into_iter()
                .map(|name| Group::V2 {
                    base: base.clone(),
                    dir: dir.join(name),
                })
                .collect(),
        }
    }

    /// Does any of the group's directories exist?
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }

    /// SIGKILLs every process in the group and its children until none is left (bounded), then removes the
    /// directories, deepest first. Returns how many processes were killed.
    pub fn kill_and_remove(&self, bound: Duration) -> Result<usize, CgroupError> {
        let deadline = std::time::Instant::now() + bound;
        let mut killed = 0;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                if procs::send_signal(*pid, 9) {
                    killed += 1;
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(CgroupError::Io {
                    path: self.dirs()[0].to_path_buf(),
                    source: io::Error::other(format!(
                        "processes {pids:?} are still in the group after SIGKILL"
                    )),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.remove()?;
        Ok(killed)
    }

    /// Removes the (empty) directories, children first.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for child in self.children() {
            child.remove()?;
        }
        for dir in self.dirs() {
            if dir.exists() {
                // An exiting process can hold the group busy for a moment after it left cgroup.procs.
                let mut attempt = 0;
                loop {
                    match fs::remove_dir(dir) {
                        Ok(()) => break,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                        Err(e) if attempt < 50 => {
                            let _ = e;
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(io_err(dir)(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// CPU time used by the group's processes, in nanoseconds.
    pub fn cpu_usage_nanos(&self) -> Option<u64> {
        match self {
            Group::V1 { cpuacct, .. } => read_u64(&cpuacct.join("cpuacct.usage")),
            Group::V2 { dir, .. } => fs::read_to_string(dir.join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|us| us * 1000),
        }
    }

    /// Times the group was throttled at its CPU limit, and for how long in total (ns).
    pub fn cpu_throttled(&self) -> Option<(u64, u64)> {
        let (file, periods_key, time_key, time_scale) = match self {
            Group::V1 { cpu, .. } => (cpu.join("cpu.stat"), "nr_throttled", "throttled_time", 1),
            Group::V2 { dir, .. } => (dir.join("cpu.stat"), "nr_throttled", "throttled_usec", 1000),
        };
        let stat = fs::read_to_string(file).ok()?;
        let value = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some((value(periods_key)?, value(time_key)? * time_scale))
    }

    /// The working set as the kubelet counts it: usage minus inactive file pages.
    pub fn memory_working_set(&self) -> Option<u64> {
        match self {
            Group::V1 { memory, .. } => {
                let usage = read_u64(&memory.join("memory.usage_in_bytes"))?;
                let inactive =
                    stat_value(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                Some(usage.saturating_sub(inactive))
            }
            Group::V2 { dir, .. } => {
                let usage = read_u64(&dir.join("memory.current"))?;
                let inactive = stat_value(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
                Some(usage.saturating_sub(inactive))
            }
        }
    }

    /// How many processes the kernel OOM-killed in this group.
    pub fn oom_kills(&self) -> u64 {
        match self {
            Group::V1 { memory, .. } => stat_value(&memory.join("memory.oom_control"), "oom_kill"),
            Group::V2 { dir, .. } => stat_value(&dir.join("memory.events"), "oom_kill"),
        }
        .unwrap_or(0)
    }
}

/// The CFS quota for a limit in millicores (at least the kernel's minimum of 1 ms).
pub fn cfs_quota(millis: u64) -> u64 {
    (millis * CFS_PERIOD_US / 1000).max(1000)
}

/// cgroup v1 shares for a request in millicores, as the kubelet converts them (2 at least).
pub fn cpu_shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// cgroup v2 weight for a request, from the shares as the kubelet (runc) converts them: 1..=10000.
pub fn cpu_weight(millis: u64) -> u64 {
    let shares = cpu_shares(millis);
    (1 + ((shares - 2) * 9999) / 262_142).clamp(1, 10_000)
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_value(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
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

    #[test]
    fn kubelet_conversions() {
        assert_eq!(cfs_quota(500), 50_000);
        assert_eq!(cfs_quota(1), 1000, "the kernel refuses quotas under 1 ms");
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_weight(1000), 39);
        assert_eq!(cpu_weight(0), 1);
    }

    #[test]
    fn stats_are_read_from_the_group_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, cpuacct, memory) = (
            dir.path().join("cpu"),
            dir.path().join("cpuacct"),
            dir.path().join("memory"),
        );
        let group = Group::V1 {
            cpu: cpu.clone(),
            cpuacct: cpuacct.clone(),
            memory: memory.clone(),
        };
        group.create().unwrap();
        fs::write(cpuacct.join("cpuacct.usage"), "1500000000\n").unwrap();
        fs::write(memory.join("memory.usage_in_bytes"), "1000\n").unwrap();
        fs::write(
            memory.join("memory.stat"),
            "cache 5\ntotal_inactive_file 300\n",
        )
        .unwrap();
        fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(
            cpu.join("cpu.stat"),
            "nr_periods 10\nnr_throttled 4\nthrottled_time 123\n",
        )
        .unwrap();
        assert_eq!(group.cpu_usage_nanos(), Some(1_500_000_000));
        assert_eq!(group.memory_working_set(), Some(700));
        assert_eq!(group.oom_kills(), 2);
        assert_eq!(group.cpu_throttled(), Some((4, 123)));
        group
            .set_limits(Limits {
                cpu_millis: Some(500),
                cpu_request_millis: Some(100),
                memory_bytes: Some(1 << 20),
            })
            .unwrap();
        assert_eq!(
            fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap(),
            "50000"
        );
        assert_eq!(fs::read_to_string(cpu.join("cpu.shares")).unwrap(), "102");
        assert_eq!(
            fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap(),
            "1048576"
        );
    }
}
