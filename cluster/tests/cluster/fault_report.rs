//! A generator run's faults as its report and output tell them, for the chaos tests' checks and failure messages.

pub(crate) fn faults(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["chaos"]["faults"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One line per fault: when, what, how it ended and why; what a failure message leads with.
pub(crate) fn fault_lines(faults: &[serde_json::Value]) -> String {
    let field = |f: &serde_json::Value, k: &str| f[k].as_str().map(str::to_string);
    faults
        .iter()
        .map(|f| {
            let mut line = format!(
                "  at {}s {}: {}",
                f["at_s"],
                field(f, "action").unwrap_or_default(),
                field(f, "status").unwrap_or_else(|| "?".into())
            );
            for (label, key) in [("hit", "hit"), ("error", "error"), ("undo", "undo_error")] {
                if let Some(v) = field(f, key) {
                    line.push_str(&format!("; {label}: {v}"));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last lines a run printed (its verdict and last ticks): enough to place a failure without the whole log.
pub(crate) fn tail(out: &std::process::Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
