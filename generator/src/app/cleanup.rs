//! `run --cleanup`: stop sustained work on every target and wait until the consumers report nothing held, read from
//! their `/metrics` by the contract's metric names.

use std::time::Duration;

use contract::metrics::consumer::{MEMORY_HELD_BYTES, SUSTAINED_WORKERS};
use contract::routes;
use http::{HeaderName, HeaderValue, Method};

use crate::client::SimpleClient;
use crate::targets::TargetSet;

/// Result of `--cleanup`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupSummary {
    pub stop_calls: u32,
    pub released: bool,
    pub message: String,
}

pub(crate) fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// Stop sustained jobs on every target and wait until held memory and sustained workers are back to zero. Behind a
/// Service each call may reach a different pod, so stop calls go out on fresh connections several times, and the
/// check needs three clean answers in a row. Idempotent: stopping nothing is fine.
pub async fn cleanup(
    targets: &TargetSet,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> CleanupSummary {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stop_calls = 0;
    let mut problems = Vec::new();
    for base in targets.urls() {
        for _ in 0..3 {
            let client = SimpleClient::new(Duration::from_secs(5));
            match client
                .request(
                    Method::POST,
                    &format!("{base}/load/cpu/sustained/stop"),
                    Some(&serde_json::json!({})),
                    headers,
                )
                .await
            {
                Ok((s, _)) if s < 300 => stop_calls += 1,
                Ok((s, body)) => {
                    problems.push(format!(
                        "{base}: stop answered {s} {}",
                        String::from_utf8_lossy(&body)
                    ));
                    break;
                }
                Err(e) => {
                    problems.push(format!("{base}: {e}"));
                    break;
                }
            }
        }
    }
    let mut released = false;
    let mut clean_in_a_row = 0;
    let mut last = String::new();
    'outer: while tokio::time::Instant::now() < deadline {
        let mut all_clean = true;
        for base in targets.urls() {
            let client = SimpleClient::new(Duration::from_secs(5));
            match client.get(&format!("{base}{}", routes::METRICS)).await {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(&body);
                    let held = metric_value(&text, MEMORY_HELD_BYTES.name).unwrap_or(0.0);
                    let workers = metric_value(&text, SUSTAINED_WORKERS.name).unwrap_or(0.0);
                    if held > 0.0 || workers > 0.0 {
                        all_clean = false;
                        last = format!("{base}: {held} bytes held, {workers} sustained workers");
                    }
                }
                Ok((s, _)) => {
                    all_clean = false;
                    last = format!("{base}{} answered {s}", routes::METRICS);
                }
                Err(e) => {
                    all_clean = false;
                    last = format!("{base}{}: {e}", routes::METRICS);
                }
            }
        }
        clean_in_a_row = if all_clean { clean_in_a_row + 1 } else { 0 };
        if clean_in_a_row >= 3 {
            released = true;
            break 'outer;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let message = if released {
        format!("cleanup: {stop_calls} stop call(s); no memory held, no sustained workers")
    } else {
        format!(
            "cleanup: not released within {}: {last}{}",
            humantime::format_duration(timeout),
            if problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            }
        )
    };
    CleanupSummary {
        stop_calls,
        released,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines() {
        let text = format!(
            "# HELP x\n{} 0\n{} 2\n",
            MEMORY_HELD_BYTES.name, SUSTAINED_WORKERS.name
        );
        assert_eq!(metric_value(&text, SUSTAINED_WORKERS.name), Some(2.0));
        assert_eq!(metric_value(&text, MEMORY_HELD_BYTES.name), Some(0.0));
        assert_eq!(metric_value(&text, "missing"), None);
    }
}
