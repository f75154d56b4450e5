//! The counting global allocator: it wraps the system allocator and counts allocations, bytes allocated and bytes
//! freed, so `/metrics` can expose allocator pressure (the Rust counterpart of a GC-rate signal).
//!
//! Cost is kept low with per-thread batching: each thread accumulates its counts in plain thread-local cells and
//! publishes them to the shared relaxed atomics only every [`FLUSH_BYTES`] bytes or [`FLUSH_ALLOCATIONS`] allocations,
//! so the hot path touches no shared cache line. The published figures therefore lag the truth by at most one batch
//! per thread; [`flush_thread_counts`] publishes a thread's batch early (worker threads call it before they exit).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// A thread publishes its batch once it has allocated or freed this many bytes (in absolute value).
const FLUSH_BYTES: i64 = 256 * 1024;
/// ... or made this many allocations.
const FLUSH_ALLOCATIONS: u64 = 512;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Allocated minus freed. Signed because a thread may publish its frees before another publishes the allocations.
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Set once a [`CountingAllocator`] served an allocation, so metrics can tell "not installed" from "zero".
static INSTALLED: AtomicBool = AtomicBool::new(false);

struct Pending {
    allocations: Cell<u64>,
    allocated: Cell<u64>,
    live_delta: Cell<i64>,
}

thread_local! {
    // `const` initialisation and no `Drop`: accessing it never allocates and never fails during thread teardown.
    static PENDING: Pending = const {
        Pending { allocations: Cell::new(0), allocated: Cell::new(0), live_delta: Cell::new(0) }
    };
}

/// A snapshot of the allocator counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Whether the counting allocator is the process' global allocator.
    pub installed: bool,
    /// Heap allocations made (including reallocations).
    pub allocations: u64,
    /// Bytes allocated in total.
    pub allocated_bytes: u64,
    /// Bytes allocated and not yet freed (never negative).
    pub heap_bytes: u64,
}

/// Reads the published counters.
pub fn stats() -> AllocatorStats {
    AllocatorStats {
        installed: INSTALLED.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        allocated_bytes: ALLOCATED_BYTES.load(Ordering::Relaxed),
        heap_bytes: LIVE_BYTES.load(Ordering::Relaxed).max(0) as u64,
    }
}

/// Publishes the calling thread's pending batch now (call before a worker thread exits so nothing is lost).
pub fn flush_thread_counts() {
    let _ = PENDING.try_with(publish);
}

fn publish(pending: &Pending) {
    let allocations = pending.allocations.replace(0);
    let allocated = pending.allocated.replace(0);
    let live_delta = pending.live_delta.replace(0);
    if allocations != 0 {
        ALLOCATIONS.fetch_add(allocations, Ordering::Relaxed);
    }
    if allocated != 0 {
        ALLOCATED_BYTES.fetch_add(allocated, Ordering::Relaxed);
    }
    if live_delta != 0 {
        LIVE_BYTES.fetch_add(live_delta, Ordering::Relaxed);
    }
}

#[inline]
fn record_alloc(size: usize) {
    let counted = PENDING.try_with(|pending| {
        let allocations = pending.allocations.get() + 1;
        pending.allocations.set(allocations);
        pending.allocated.set(pending.allocated.get() + size as u64);
        let live = pending.live_delta.get() + size as i64;
        pending.live_delta.set(live);
        if allocations >= FLUSH_ALLOCATIONS || live.abs() >= FLUSH_BYTES {
            publish(pending);
        }
    });
    if counted.is_err() {
        // The thread-local is gone (thread teardown): count directly.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(size as i64, Ordering::Relaxed);
    }
}

#[inline]
fn record_free(size: usize) {
    let counted = PENDING.try_with(|pending| {
        let live = pending.live_delta.get() - size as i64;
        pending.live_delta.set(live);
        if live.abs() >= FLUSH_BYTES {
            publish(pending);
        }
    });
    if counted.is_err() {
        LIVE_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
    }
}

/// The counting allocator. `main.rs` installs it with `#[global_allocator]`; it delegates every call to
/// [`System`] and only adds bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// A new allocator value (for the `#[global_allocator]` static).
    pub const fn new() -> Self {
        CountingAllocator
    }
}

// SAFETY: every method forwards the caller's arguments unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the bookkeeping around the calls touches only thread-locals with const initialisers and no destructors,
// and atomics, so it never allocates (no re-entrancy) and never unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours: `layout` has non-zero size, as guaranteed by our caller.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            mark_installed();
            record_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged, as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            mark_installed();
            record_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (hence by `System`) with `layout`, as our caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        record_free(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator and `new_size` is valid, as our caller guarantees.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            // A reallocation counts as one allocation of the new size and a free of the old one.
            record_free(layout.size());
            record_alloc(new_size);
        }
        new_ptr
    }
}

#[inline]
fn mark_installed() {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}
