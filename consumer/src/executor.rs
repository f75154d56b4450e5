//! Executor slots and the bounded wait for them. A replica has `--executors` slots (a fair, FIFO semaphore); every
//! piece of work (async jobs and sync cpu/memory/io requests alike) holds one while it runs. Work waiting for a slot
//! is bounded by `--queue-size` in total; beyond it, callers get 429. Both waiting and running are mirrored in the
//! `consumer_jobs_queued` / `consumer_jobs_running` gauges by RAII guards, so every exit path keeps them exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The replica's executor slots and wait queue.
#[derive(Debug)]
pub struct Executor {
    slots: Arc<Semaphore>,
    executors: u32,
    queue_size: u32,
    waiting: AtomicU32,
    running: AtomicU32,
    metrics: Metrics,
}

/// The queue bound was hit.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull {
    pub queue_size: u32,
}

/// A place in the wait queue; dropping it (admitted or abandoned) leaves the queue.
#[derive(Debug)]
pub struct QueueTicket {
    executor: Arc<Executor>,
    enqueued_at: Instant,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.executor.waiting.fetch_sub(1, Ordering::AcqRel);
        self.executor.metrics.jobs_queued.dec();
    }
}

/// A held executor slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    executor: Arc<Executor>,
    _permit: OwnedSemaphorePermit,
    /// How long the work waited in the queue for this slot.
    pub queue_wait: Duration,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.executor.running.fetch_sub(1, Ordering::AcqRel);
        self.executor.metrics.jobs_running.dec();
    }
}

impl Executor {
    pub fn new(executors: u32, queue_size: u32, metrics: Metrics) -> Arc<Executor> {
        metrics.executors.set(i64::from(executors));
        Arc::new(Executor {
            slots: Arc::new(Semaphore::new(executors as usize)),
            executors,
            queue_size,
            waiting: AtomicU32::new(0),
            running: AtomicU32::new(0),
            metrics,
        })
    }

    pub fn executors(&self) -> u32 {
        self.executors
    }

    pub fn queue_size(&self) -> u32 {
        self.queue_size
    }

    /// Work waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Slots held now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Acquire)
    }

    /// Takes a place in the queue, or refuses when `queue_size` items already wait.
    pub fn enqueue(self: &Arc<Self>) -> Result<QueueTicket, QueueFull> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.queue_size).then_some(waiting + 1)
            })
            .map_err(|_| QueueFull {
                queue_size: self.queue_size,
            })?;
        self.metrics.jobs_queued.inc();
        Ok(QueueTicket {
            executor: Arc::clone(self),
            enqueued_at: Instant::now(),
        })
    }

    /// Waits (first come, first served) for a free slot, then leaves the queue holding it.
    pub async fn acquire(ticket: QueueTicket) -> Slot {
        let executor = Arc::clone(&ticket.executor);
        let permit = Arc::clone(&executor.slots)
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed");
        // Count as running before leaving the queue, so queued + running never dips while work changes hands.
        executor.running.fetch_add(1, Ordering::AcqRel);
        executor.metrics.jobs_running.inc();
        let queue_wait = ticket.enqueued_at.elapsed();
        drop(ticket);
        executor
            .metrics
            .job_queue_wait_seconds
            .observe(queue_wait.as_secs_f64());
        Slot {
            executor,
            _permit: permit,
            queue_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_and_queue_are_bounded_and_gauges_follow() {
        let metrics = Metrics::new();
        let executor = Executor::new(1, 2, metrics.clone());
        let first = Executor::acquire(executor.enqueue().unwrap()).await;
        assert_eq!(metrics.jobs_running.get(), 1);

        let second = executor.enqueue().unwrap();
        let third = executor.enqueue().unwrap();
        assert!(executor.enqueue().is_err(), "the queue holds at most 2");
        assert_eq!(metrics.jobs_queued.get(), 2);

        let waiter = tokio::spawn(Executor::acquire(second));
        drop(third); // an abandoned wait leaves the queue
        assert_eq!(metrics.jobs_queued.get(), 1);
        drop(first);
        let second_slot = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(metrics.jobs_queued.get(), 0);
        assert_eq!(metrics.jobs_running.get(), 1);
        drop(second_slot);
        assert_eq!(metrics.jobs_running.get(), 0);
        assert_eq!(executor.running(), 0);
        assert_eq!(executor.waiting(), 0);
    }
}
