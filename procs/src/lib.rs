//! One child-process type for whoever starts the lab's binaries: the lab at run time (its scaler and consumer
//! replicas) and the tests (testkit). A [`Child`] is spawned with piped output whose lines are captured, learns its
//! ephemeral ports from the `listening` line ([`contract::listening::Listening`]), is signalled, stopped the way
//! Kubernetes stops a pod (SIGTERM, a grace period, then SIGKILL), reaped, and killed if dropped.
//!
//! Waiting for a child's exit also waits (bounded) for end-of-file on both of its pipes, so the output a caller reads
//! afterwards holds everything the child wrote before it exited: a process can exit before its reader tasks have
//! drained the pipes, and reading the captured lines right after `waitpid` would then miss the last ones.
//!
//! A [`Registry`] tracks every child that is alive, so a supervisor can SIGKILL all of them at once (a second
//! interrupt) and check that none is left, whichever task owns each [`Child`].
//!
//! This crate is its own because the lab's binary and the tests both need it: in `lab`, testkit (and every crate's
//! tests) would link the lab's gRPC client and the load engine; in testkit, the lab's binary would link reqwest and
//! tempfile.

mod child;
mod output;
mod registry;
mod signal;
mod signals;

pub use child::{Child, Error, Spawn, StopOutcome};
pub use registry::Registry;
pub use signal::{is_gone, send_signal};
pub use signals::Signals;

/// How long waiting for a child's exit also waits for the end of its output (a grandchild that inherited a pipe can
/// hold it open for ever; the child's own lines are in the pipe long before this).
pub const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests;
