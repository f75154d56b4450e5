//! Memory load under a budget. A request first reserves its size from the [`MemoryBudget`] (refused when the
//! reservations would exceed it, so the pod is never OOM-killed by a request), then allocates and touches every page,
//! holds the block, frees it and hands the freed heap back to the OS, measuring resident memory at each step.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::metrics::Metrics;
use crate::sys;

/// The budget for memory held by load work.
#[derive(Debug)]
pub struct MemoryBudget {
    budget: u64,
    reserved: AtomicU64,
    metrics: Metrics,
}

/// A reservation would exceed the budget.
#[derive(Debug, Clone, Copy)]
pub struct OverBudget {
    pub budget: u64,
    pub held: u64,
    pub requested: u64,
}

/// Bytes reserved from the budget; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl MemoryBudget {
    pub fn new(budget: u64, metrics: Metrics) -> Arc<MemoryBudget> {
        metrics
            .memory_budget_bytes
            .set(i64::try_from(budget).unwrap_or(i64::MAX));
        Arc::new(MemoryBudget {
            budget,
            reserved: AtomicU64::new(0),
            metrics,
        })
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes reserved by accepted memory work (held now, or about to be).
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Reserves `bytes`, or says why not.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, OverBudget> {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                reserved
                    .checked_add(bytes)
                    .filter(|total| *total <= self.budget)
            })
            .map(|_| Reservation {
                budget: Arc::clone(self),
                bytes,
            })
            .map_err(|held| OverBudget {
                budget: self.budget,
                held,
                requested: bytes,
            })
    }
}

/// What a memory request measured.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemoryReport {
    /// Bytes allocated and touched.
    pub size_bytes: u64,
    /// Resident memory of the process before allocating.
    pub rss_before_bytes: u64,
    /// Resident memory once every page was touched.
    pub rss_after_touch_bytes: u64,
    /// Measured resident-memory change from allocating and touching.
    pub rss_delta_bytes: i64,
    /// Resident memory after freeing.
    pub rss_after_free_bytes: u64,
    /// Resident memory released by freeing.
    pub rss_released_bytes: i64,
    /// Seconds to allocate and touch every page.
    pub touch_seconds: f64,
    /// Seconds the block was held.
    pub held_seconds: f64,
    /// Seconds to free the block and return it to the OS.
    pub release_seconds: f64,
    /// False if the hold was cut short (cancelled).
    pub completed: bool,
}

/// Allocates `reservation`'s bytes, touches every page, holds them for `hold` (or until `cancel`), then frees them.
pub async fn hold_memory(
    reservation: Reservation,
    hold: Duration,
    cancel: &CancellationToken,
) -> Result<MemoryReport, String> {
    let size = usize::try_from(reservation.bytes)
        .map_err(|_| "size does not fit this platform".to_owned())?;
    let metrics = reservation.budget.metrics.clone();
    let (block, rss_before, rss_after_touch, touch_seconds) =
        tokio::task::spawn_blocking(move || {
            let rss_before = sys::resident_bytes().unwrap_or(0);
            let started = Instant::now();
            let mut block: Vec<u8> = Vec::new();
            block
                .try_reserve_exact(size)
                .map_err(|error| format!("could not allocate {size} bytes: {error}"))?;
            // Writing every byte (a memset) makes every page resident, whatever the allocator did.
            block.resize(size, 0xA5);
            black_box(&mut block);
            let touch_seconds = started.elapsed().as_secs_f64();
            Ok::<_, String>((
                block,
                rss_before,
                sys::resident_bytes().unwrap_or(0),
                touch_seconds,
            ))
        })
        .await
        .map_err(|error| format!("allocation task failed: {error}"))??;
    metrics.memory_held_bytes.add(size as i64);

    let held_from = Instant::now();
    let completed = tokio::select! {
        _ = tokio::time::sleep(hold) => true,
        _ = cancel.cancelled() => false,
    };
    let held_seconds = held_from.elapsed().as_secs_f64();

    let (rss_after_free, release_seconds) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        drop(block);
        sys::release_free_heap();
        (
            sys::resident_bytes().unwrap_or(0),
            started.elapsed().as_secs_f64(),
        )
    })
    .await
    .map_err(|error| format!("release task failed: {error}"))?;
    metrics.memory_held_bytes.sub(size as i64);
    drop(reservation);

    Ok(MemoryReport {
        size_bytes: size as u64,
        rss_before_bytes: rss_before,
        rss_after_touch_bytes: rss_after_touch,
        rss_delta_bytes: rss_after_touch as i64 - rss_before as i64,
        rss_after_free_bytes: rss_after_free,
        rss_released_bytes: rss_after_touch as i64 - rss_after_free as i64,
        touch_seconds,
        held_seconds,
        release_seconds,
        completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned() {
        let budget = MemoryBudget::new(100, Metrics::new());
        let first = budget.reserve(60).unwrap();
        let refused = budget.reserve(50).unwrap_err();
        assert_eq!(
            (refused.budget, refused.held, refused.requested),
            (100, 60, 50)
        );
        drop(first);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.reserve(100).is_ok());
        assert!(budget.reserve(101).is_err());
    }
}
