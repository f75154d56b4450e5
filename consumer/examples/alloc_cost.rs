//! Measures the counting allocator's cost per allocation: built with the default features it runs with
//! `consumer::CountingAllocator` installed, built with `--no-default-features` on the plain system allocator, so the
//! benchmark runs both builds and compares. Prints `alloc_free_pair_ns <single-thread> <two-threads>`.

use std::hint::black_box;
use std::time::Instant;

#[cfg(feature = "counting-allocator")]
#[global_allocator]
static ALLOCATOR: consumer::CountingAllocator = consumer::CountingAllocator::new();

const PAIRS: usize = 20_000_000;

/// Allocates and frees `pairs` blocks of request-like sizes (16 B to 4 KiB); returns ns per pair.
fn churn(pairs: usize) -> f64 {
    let started = Instant::now();
    for i in 0..pairs {
        let block: Vec<u8> = Vec::with_capacity(black_box(16 + (i % 64) * 64));
        black_box(&block);
    }
    started.elapsed().as_nanos() as f64 / pairs as f64
}

fn main() {
    churn(PAIRS / 10); // warm-up
    let single = (0..3).map(|_| churn(PAIRS)).fold(f64::INFINITY, f64::min);
    let two = (0..3)
        .map(|_| {
            let handles: Vec<_> = (0..2)
                .map(|_| std::thread::spawn(|| churn(PAIRS)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("churn thread"))
                .fold(0.0, f64::max)
        })
        .fold(f64::INFINITY, f64::min);
    println!("alloc_free_pair_ns {single:.2} {two:.2}");
}
