//! The counting allocator, installed as this test binary's global allocator: it counts allocations and bytes,
//! tracks live heap bytes through frees and reallocations, and its figures reach the metrics exposition.

use std::hint::black_box;

use consumer::alloc::{flush_thread_counts, stats};

#[global_allocator]
static ALLOCATOR: consumer::CountingAllocator = consumer::CountingAllocator::new();

const MIB: u64 = 1 << 20;

#[test]
fn allocations_bytes_and_live_heap_are_counted() {
    flush_thread_counts();
    let before = stats();
    assert!(before.installed);

    let mut blocks: Vec<Vec<u8>> = (0..16).map(|_| vec![1u8; MIB as usize]).collect();
    black_box(&mut blocks);
    flush_thread_counts();
    let during = stats();
    assert!(
        during.allocations >= before.allocations + 16,
        "{before:?} -> {during:?}"
    );
    assert!(during.allocated_bytes >= before.allocated_bytes + 16 * MIB);
    // Other test threads allocate too, so compare with slack rather than exactly.
    assert!(
        during.heap_bytes >= before.heap_bytes + 12 * MIB,
        "{before:?} -> {during:?}"
    );

    drop(blocks);
    flush_thread_counts();
    let after = stats();
    assert!(
        after.heap_bytes + 12 * MIB <= during.heap_bytes,
        "frees are counted: {during:?} -> {after:?}"
    );
    assert!(
        after.allocated_bytes >= during.allocated_bytes,
        "allocated bytes only grow"
    );

    let mut growing: Vec<u8> = Vec::with_capacity(1024);
    growing.resize(8 * MIB as usize, 7);
    black_box(&mut growing);
    flush_thread_counts();
    let grown = stats();
    assert!(
        grown.allocated_bytes >= after.allocated_bytes + 8 * MIB,
        "reallocation counts the new size"
    );
}

#[test]
fn a_worker_thread_publishes_its_counts_before_exiting() {
    flush_thread_counts();
    let before = stats();
    std::thread::spawn(|| {
        let block = black_box(vec![0u8; 4096]);
        drop(block);
        flush_thread_counts();
    })
    .join()
    .unwrap();
    assert!(stats().allocations > before.allocations);
}

#[test]
fn the_exposition_reports_the_allocator_figures() {
    let metrics = consumer::metrics::Metrics::new();
    let _held = black_box(vec![3u8; 2 * MIB as usize]);
    flush_thread_counts();
    let text = metrics.render();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    assert!(value("consumer_allocations_total") > 0.0);
    assert!(value("consumer_allocated_bytes_total") >= (2 * MIB) as f64);
    assert!(value("consumer_heap_bytes") >= (2 * MIB) as f64);
    let later = metrics.render();
    assert!(
        later.contains("consumer_allocations_total"),
        "rendering twice keeps the counters monotonic"
    );
}
