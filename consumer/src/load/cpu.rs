//! CPU burning: hash rounds until the calling thread has used the requested CPU time (measured with the thread CPU
//! clock, so the burn is accurate even when the core is shared). `complexity` sets the rounds per iteration, i.e. the
//! work per iteration, never the duration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::sys::thread_cpu_time;

/// Hash rounds per iteration per complexity step.
pub const ROUNDS_PER_COMPLEXITY: u64 = 2_000;
/// CPU burned is reported to the progress callback at least this often (keeps the burn counter's rate smooth).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What a burn measured.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BurnReport {
    /// Iterations completed (each `complexity × 2000` hash rounds).
    pub iterations: u64,
    /// Thread CPU seconds consumed, measured.
    pub cpu_seconds: f64,
    /// Wall-clock seconds the burn took.
    pub wall_seconds: f64,
    /// False if the burn was stopped early (cancelled, or the wall-clock cap hit on a starved core).
    pub completed: bool,
}

/// One iteration: `rounds` rounds of a 64-bit mixing function (splitmix64's finaliser).
#[inline]
fn iteration(mut state: u64, rounds: u64) -> u64 {
    for round in 0..rounds {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15 ^ round);
        state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state ^= state >> 31;
    }
    state
}

/// Burns `cpu_target` of this thread's CPU time. Stops early when `cancel` fires or after `wall_cap` of wall time.
/// `on_progress` receives CPU seconds burned since its previous call (the last call covers the remainder).
pub fn burn(
    cpu_target: Duration,
    complexity: u64,
    wall_cap: Duration,
    cancel: &CancellationToken,
    on_progress: &dyn Fn(f64),
) -> BurnReport {
    let rounds = complexity.max(1) * ROUNDS_PER_COMPLEXITY;
    let wall_start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut reported = cpu_start;
    let mut iterations = 0u64;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let completed = loop {
        state = black_box(iteration(black_box(state), rounds));
        iterations += 1;
        let now = thread_cpu_time();
        if now - reported >= PROGRESS_EVERY {
            on_progress((now - reported).as_secs_f64());
            reported = now;
        }
        if now - cpu_start >= cpu_target {
            break true;
        }
        if cancel.is_cancelled() || wall_start.elapsed() >= wall_cap {
            break false;
        }
    };
    let cpu_end = thread_cpu_time();
    on_progress((cpu_end - reported).as_secs_f64());
    BurnReport {
        iterations,
        cpu_seconds: (cpu_end - cpu_start).as_secs_f64(),
        wall_seconds: wall_start.elapsed().as_secs_f64(),
        completed,
    }
}

/// The wall-clock cap for a burn of `cpu_target`: generous (a starved core), but bounded.
pub fn wall_cap_for(cpu_target: Duration) -> Duration {
    cpu_target * 10 + Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn burn_reaches_its_cpu_target_and_reports_progress() {
        let total = Mutex::new(0.0);
        let report = burn(
            Duration::from_millis(120),
            5,
            Duration::from_secs(10),
            &CancellationToken::new(),
            &|delta| {
                *total.lock().unwrap() += delta;
            },
        );
        assert!(report.completed);
        assert!(
            report.cpu_seconds >= 0.120 && report.cpu_seconds < 0.2,
            "{report:?}"
        );
        assert!(report.iterations > 0);
        let reported = *total.lock().unwrap();
        assert!(
            (reported - report.cpu_seconds).abs() < 1e-6,
            "progress sums to the burn: {reported} vs {report:?}"
        );
    }

    #[test]
    fn complexity_changes_work_per_iteration_not_duration() {
        let cancel = CancellationToken::new();
        let light = burn(
            Duration::from_millis(60),
            1,
            Duration::from_secs(10),
            &cancel,
            &|_| {},
        );
        let heavy = burn(
            Duration::from_millis(60),
            10,
            Duration::from_secs(10),
            &cancel,
            &|_| {},
        );
        assert!(
            light.iterations > heavy.iterations * 3,
            "{light:?} vs {heavy:?}"
        );
        assert!(
            heavy.cpu_seconds >= 0.060 && heavy.cpu_seconds < 0.1,
            "{heavy:?}"
        );
    }

    #[test]
    fn a_cancelled_burn_stops() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let report = burn(
            Duration::from_secs(5),
            5,
            Duration::from_secs(10),
            &cancel,
            &|_| {},
        );
        assert!(!report.completed);
        assert!(report.cpu_seconds < 0.5);
    }
}
