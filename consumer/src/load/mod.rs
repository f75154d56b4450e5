//! The load work itself, independent of HTTP: CPU burning on dedicated low-priority threads, memory held under a
//! budget, I/O-like waits, and sustained multi-thread CPU jobs.

pub mod cpu;
pub mod memory;
pub mod sustained;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

type Task = Box<dyn FnOnce() + Send>;

/// A fixed pool of load threads (lowered priority) for CPU burns: never the async runtime's workers, and no thread
/// creation per request. Sized to the executor slots, since every burn holds a slot.
#[derive(Debug)]
pub struct LoadPool {
    sender: Mutex<mpsc::Sender<Task>>,
}

impl LoadPool {
    /// Starts `threads` threads named `{name}-{i}`; they exit when the pool is dropped.
    pub fn new(threads: usize, name: &str) -> LoadPool {
        let (sender, receiver) = mpsc::channel::<Task>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    crate::sys::lower_thread_priority();
                    loop {
                        let task = receiver
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .recv();
                        let Ok(task) = task else { break };
                        // A panicking task must not take the thread with it; its caller sees the dropped result.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                        crate::alloc::flush_thread_counts();
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a load thread");
            }
        }
        LoadPool {
            sender: Mutex::new(sender),
        }
    }

    /// Runs `work` on a pool thread and waits for its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (result_sender, result) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = result_sender.send(work());
        });
        self.sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(task)
            .map_err(|_| "the load threads are gone".to_owned())?;
        result
            .await
            .map_err(|_| "the load task panicked".to_owned())
    }
}

/// Waits `delay` without using CPU (an I/O-bound request stuck on a slow downstream); false if cancelled first.
pub async fn io_wait(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pool_runs_work_off_the_runtime_and_survives_a_panic() {
        let pool = LoadPool::new(2, "test-load");
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("test-load-"));
        let panicked: Result<(), String> = pool.run(|| panic!("boom")).await;
        assert!(panicked.is_err());
        assert_eq!(pool.run(|| 41 + 1).await.unwrap(), 42);
    }
}
