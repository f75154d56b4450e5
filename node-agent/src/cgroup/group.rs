//! One group ([`Group`]): created in each hierarchy, its limits written (the kubelet's CPU and memory conversions),
//! its processes listed and killed, its CPU time, throttling, working set and OOM kills read back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CFS_PERIOD_US, CgroupError, io_err};

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
