//! Sustained CPU jobs: `workers` dedicated OS threads (lowered priority) burning for `duration_seconds` of wall time
//! or until stopped, bounded over all jobs by `--max-sustained-workers`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::load::cpu;
use crate::metrics::Metrics;

/// CPU burned per inner burn call; the stop flag and the deadline are checked between chunks too.
const CHUNK: Duration = Duration::from_millis(50);

/// The sustained-worker pool bound.
#[derive(Debug)]
pub struct SustainedPool {
    max_workers: u32,
    active: AtomicU32,
    metrics: Metrics,
}

/// Starting the job would exceed the worker bound.
#[derive(Debug, Clone, Copy)]
pub struct TooManyWorkers {
    pub max_workers: u32,
    pub active: u32,
    pub requested: u32,
}

/// What a sustained job measured.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SustainedReport {
    pub workers: u32,
    /// CPU seconds burned over all workers.
    pub cpu_seconds: f64,
    /// Wall seconds the job ran.
    pub wall_seconds: f64,
    /// Iterations over all workers.
    pub iterations: u64,
    /// False if stopped before `duration_seconds`.
    pub completed: bool,
}

impl SustainedPool {
    pub fn new(max_workers: u32, metrics: Metrics) -> Arc<SustainedPool> {
        Arc::new(SustainedPool {
            max_workers,
            active: AtomicU32::new(0),
            metrics,
        })
    }

    pub fn active_workers(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Starts `workers` threads burning for `duration` (wall) at `complexity`; the returned future resolves when
    /// every thread has stopped.
    pub fn start(
        self: &Arc<Self>,
        workers: u32,
        duration: Duration,
        complexity: u64,
        cancel: CancellationToken,
    ) -> Result<impl Future<Output = SustainedReport> + Send + 'static, TooManyWorkers> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                active
                    .checked_add(workers)
                    .filter(|total| *total <= self.max_workers)
            })
            .map_err(|active| TooManyWorkers {
                max_workers: self.max_workers,
                active,
                requested: workers,
            })?;
        self.metrics.sustained_workers.add(i64::from(workers));

        let started = Instant::now();
        let deadline = started + duration;
        let mut receivers = Vec::with_capacity(workers as usize);
        for index in 0..workers {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let pool = Arc::clone(self);
            let cancel = cancel.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sustained-{index}"))
                .spawn(move || {
                    crate::sys::lower_thread_priority();
                    let burn_counter = pool.metrics.cpu_burn_seconds_total.clone();
                    let (mut cpu_seconds, mut iterations) = (0.0, 0u64);
                    while Instant::now() < deadline && !cancel.is_cancelled() {
                        let report = cpu::burn(CHUNK, complexity, CHUNK * 10, &cancel, &|delta| {
                            burn_counter.inc_by(delta)
                        });
                        cpu_seconds += report.cpu_seconds;
                        iterations += report.iterations;
                    }
                    pool.active.fetch_sub(1, Ordering::AcqRel);
                    pool.metrics.sustained_workers.dec();
                    crate::alloc::flush_thread_counts();
                    let _ = sender.send((cpu_seconds, iterations));
                });
            match spawned {
                Ok(_) => receivers.push(receiver),
                Err(_) => {
                    // This worker never started: give its place back.
                    self.active.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.sustained_workers.dec();
                }
            }
        }
        let started_workers = receivers.len() as u32;
        Ok(async move {
            let mut report = SustainedReport {
                workers: started_workers,
                cpu_seconds: 0.0,
                wall_seconds: 0.0,
                iterations: 0,
                completed: true,
            };
            for receiver in receivers {
                if let Ok((cpu_seconds, iterations)) = receiver.await {
                    report.cpu_seconds += cpu_seconds;
                    report.iterations += iterations;
                }
            }
            report.wall_seconds = started.elapsed().as_secs_f64();
            report.completed = !cancel.is_cancelled() && started_workers == workers;
            report
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_are_bounded_and_stop_on_cancel() {
        let metrics = Metrics::new();
        let pool = SustainedPool::new(3, metrics.clone());
        let cancel = CancellationToken::new();
        let job = pool
            .start(2, Duration::from_secs(60), 1, cancel.clone())
            .unwrap();
        assert_eq!(pool.active_workers(), 2);
        assert!(
            pool.start(2, Duration::from_secs(1), 1, CancellationToken::new())
                .is_err()
        );
        assert_eq!(metrics.sustained_workers.get(), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
        let report = tokio::time::timeout(Duration::from_secs(5), job)
            .await
            .unwrap();
        assert!(!report.completed);
        assert!(report.cpu_seconds > 0.0);
        assert_eq!(pool.active_workers(), 0);
        assert_eq!(metrics.sustained_workers.get(), 0);
    }

    #[tokio::test]
    async fn a_short_job_completes() {
        let pool = SustainedPool::new(4, Metrics::new());
        let job = pool
            .start(1, Duration::from_millis(200), 5, CancellationToken::new())
            .unwrap();
        let report = tokio::time::timeout(Duration::from_secs(5), job)
            .await
            .unwrap();
        assert!(report.completed);
        assert!(report.wall_seconds >= 0.2);
    }
}
