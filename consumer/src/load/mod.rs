//! The load work itself, independent of HTTP: CPU burning on dedicated low-priority threads, memory held under a
//! budget, I/O-like waits, and sustained multi-thread CPU jobs.

pub mod cpu;
pub mod memory;
pub mod sustained;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `work` on a new OS thread (never on the async runtime's workers) at lowered priority, so probes and scrapes
/// stay fast however much load runs; the thread's allocator counts are published before it exits.
pub async fn run_on_load_thread<T, F>(name: &str, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            crate::sys::lower_thread_priority();
            let outcome = work();
            crate::alloc::flush_thread_counts();
            let _ = sender.send(outcome);
        })
        .map_err(|error| format!("could not start a load thread: {error}"))?;
    receiver
        .await
        .map_err(|_| "the load thread panicked".to_owned())
}

/// Waits `delay` without using CPU (an I/O-bound request stuck on a slow downstream); false if cancelled first.
pub async fn io_wait(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}
