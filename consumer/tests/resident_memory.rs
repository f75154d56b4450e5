//! The memory load measured where it acts: the process's resident memory. It reads process-wide RSS, so it runs alone
//! in its own test binary: in the library's test binary, tests running beside it allocated too and moved the figure
//! (an 86 MB rise for a 64 MB hold, seen in a fresh-clone CI run).

use std::time::Duration;

use consumer::load::memory::{MemoryBudget, hold_memory};
use consumer::metrics::Metrics;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn holding_memory_raises_resident_memory_and_frees_it() {
    let metrics = Metrics::new();
    let budget = MemoryBudget::new(1 << 30, metrics.clone());
    let size = 64u64 << 20;
    let report = hold_memory(
        budget.reserve(size).unwrap(),
        Duration::from_millis(10),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(report.completed);
    assert_eq!(report.size_bytes, size);
    let delta = report.rss_delta_bytes as f64;
    assert!(
        delta > size as f64 * 0.9 && delta < size as f64 * 1.1,
        "{report:?}"
    );
    assert!(
        report.rss_released_bytes as f64 > size as f64 * 0.9,
        "{report:?}"
    );
    assert_eq!(metrics.memory_held_bytes.get(), 0);
    assert_eq!(budget.reserved(), 0);
}
