//! Thin wrappers over the few Linux calls the load work needs (thread CPU clock, thread priority, returning freed
//! heap to the OS, page size), plus safe `/proc` and cgroup readers. The only module besides `alloc` that uses
//! `unsafe`, each call with its own `SAFETY:` note.
#![allow(unsafe_code)]

use std::time::Duration;

/// CPU time consumed by the calling thread (user + system), from `CLOCK_THREAD_CPUTIME_ID`.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Lowers the calling thread's scheduling priority to nice 19, so load threads never delay probes or scrapes
/// served by the async runtime. Best effort: failure is ignored (the burn still works, only less politely).
pub fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: on Linux, PRIO_PROCESS with a thread id changes only that thread's nice value; raising the value
    // needs no privilege. Arguments are plain integers.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
}

/// Asks glibc to return free heap memory to the OS, so that freeing a `/load/memory` block lowers resident memory
/// promptly even for blocks below the mmap threshold.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas; 0 = keep no extra padding.
    let _ = unsafe { libc::malloc_trim(0) };
}

/// The system page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size() as u64)
}

/// The memory limit of this process' cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`), if one is set.
pub fn cgroup_memory_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    if let Some(text) = v2 {
        let text = text.trim();
        return if text == "max" {
            None
        } else {
            text.parse().ok()
        };
    }
    let v1: u64 = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // cgroup v1 reports "no limit" as a huge page-aligned number near i64::MAX.
    if v1 >= (1u64 << 60) { None } else { Some(v1) }
}

/// Total host memory in bytes, from `/proc/meminfo`.
pub fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc` CPU times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}
