//! The generator's exit codes: distinct per cause so a Job's status says what happened. When several apply, the
//! first in this order wins: interrupted, generator saturated, thresholds breached.

/// The run completed and every threshold held.
pub const OK: i32 = 0;
/// At least one `--threshold` was breached.
pub const THRESHOLDS_BREACHED: i32 = 1;
/// Bad flags, profile or configuration (clap also exits 2 on usage errors).
pub const USAGE: i32 = 2;
/// The target never became ready (`wait` timed out, or `run`'s readiness wait did).
pub const TARGET_NOT_READY: i32 = 3;
/// The generator itself was the bottleneck: the numbers describe the tool, not the target.
pub const GENERATOR_SATURATED: i32 = 4;
/// SIGTERM/SIGINT: the partial report was written.
pub const INTERRUPTED: i32 = 5;
/// Any other failure (cannot write the report, cannot bind the metrics port, ...).
pub const RUNTIME_ERROR: i32 = 6;

/// A short name for an exit code, used in verdict lines.
pub fn describe(code: i32) -> &'static str {
    match code {
        OK => "ok",
        THRESHOLDS_BREACHED => "thresholds breached",
        USAGE => "usage error",
        TARGET_NOT_READY => "target never ready",
        GENERATOR_SATURATED => "generator saturated",
        INTERRUPTED => "interrupted",
        _ => "error",
    }
}
