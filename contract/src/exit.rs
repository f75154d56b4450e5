//! Exit codes, one table for every binary of the lab (consumer, scaler, generator, lab, cluster, node-agent), so a Job's or a script's
//! status says what happened. docs/exit-codes.md is this table in prose; when several apply, the first in the order
//! interrupted, saturated, thresholds wins.

/// Success: the run completed and every threshold held, or a server shut down cleanly after SIGTERM.
pub const OK: i32 = 0;
/// At least one threshold was breached (generator `run`, lab).
pub const THRESHOLDS_BREACHED: i32 = 1;
/// Bad flags, profile, ScaledObject or configuration (clap also exits 2 on usage errors).
pub const USAGE: i32 = 2;
/// The target never became ready (`generator wait` timed out, `run`'s readiness wait did, or a lab child never
/// logged `listening` / turned ready).
pub const TARGET_NOT_READY: i32 = 3;
/// The generator itself was the bottleneck: the numbers describe the tool, not the target.
pub const GENERATOR_SATURATED: i32 = 4;
/// SIGTERM/SIGINT ended a run early: the partial report was written, every child was stopped.
pub const INTERRUPTED: i32 = 5;
/// Any other failure at run time (cannot bind, cannot write the report, a server stopped on its own, ...).
pub const RUNTIME_ERROR: i32 = 6;

/// The local cluster needs privileges this process does not have (root: network namespaces, links, mounts).
pub const NOT_PERMITTED: i32 = 7;
/// This machine cannot run the local cluster: not Linux, a tool or built binary missing, no usable cgroups.
pub const UNSUPPORTED_HOST: i32 = 8;

/// Every code with its short name, in order.
pub const TABLE: [(i32, &str); 9] = [
    (OK, "ok"),
    (THRESHOLDS_BREACHED, "thresholds breached"),
    (USAGE, "usage error"),
    (TARGET_NOT_READY, "target never ready"),
    (GENERATOR_SATURATED, "generator saturated"),
    (INTERRUPTED, "interrupted"),
    (RUNTIME_ERROR, "runtime error"),
    (NOT_PERMITTED, "not permitted"),
    (UNSUPPORTED_HOST, "unsupported host"),
];

/// A short name for an exit code, used in verdict lines.
pub fn describe(code: i32) -> &'static str {
    TABLE
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
        .unwrap_or("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/exit-codes.md"),
        )
        .expect("docs/exit-codes.md");
        for (i, (code, name)) in TABLE.iter().enumerate() {
            assert_eq!(*code, i as i32);
            assert!(
                doc.contains(&format!("| {code} | {name} |")),
                "docs/exit-codes.md lacks `| {code} | {name} |`"
            );
        }
        assert_eq!(describe(99), "error");
    }
}
