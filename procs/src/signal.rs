//! Signals without `unsafe` (the workspace denies it): rustix's safe `kill` and pidfd calls. A child is signalled
//! through its pidfd when the kernel gives one: a pidfd names one process for good, so a signal can never reach an
//! unrelated process that was given the pid of a child reaped meanwhile.

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};

/// SIGKILL.
pub(crate) const SIGKILL: i32 = 9;
/// SIGTERM.
pub(crate) const SIGTERM: i32 = 15;

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Sends `sig` (e.g. `libc::SIGTERM`, 15) to `pid`. `false` when the pid or the signal number is not valid or the
/// process is gone. Prefer [`crate::Child::signal`] for a child: it cannot hit a reused pid.
pub fn send_signal(pid: u32, sig: i32) -> bool {
    let (Some(pid), Some(sig)) = (pid_of(pid), Signal::from_named_raw(sig)) else {
        return false;
    };
    kill_process(pid, sig).is_ok()
}

/// A handle on one process: its pidfd, or (on kernels without pidfds) its pid.
#[derive(Debug)]
pub(crate) struct Handle {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl Handle {
    /// Must be called while `pid` is an unreaped child of this process, so that it names that child.
    pub(crate) fn open(pid: u32) -> Handle {
        let pidfd = pid_of(pid).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
        Handle { pid, pidfd }
    }

    pub(crate) fn signal(&self, sig: i32) -> bool {
        match (&self.pidfd, Signal::from_named_raw(sig)) {
            (Some(fd), Some(sig)) => pidfd_send_signal(fd.as_fd(), sig).is_ok(),
            (None, _) => send_signal(self.pid, sig),
            (Some(_), None) => false,
        }
    }
}

/// Is `pid` gone: no such process, or only a zombie waiting for its parent to reap it (it runs no code any more)?
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and may itself hold spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pids_and_signals_are_refused_and_a_live_pid_is_not_gone() {
        assert!(!send_signal(0, SIGTERM));
        assert!(!send_signal(u32::MAX, SIGTERM));
        assert!(!send_signal(std::process::id(), 12345));
        assert!(!is_gone(std::process::id()));
        assert!(is_gone(u32::MAX));
    }
}
