//! `generator wait` and the readiness wait of `run`: poll a URL until it answers 200, bounded in time.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::WaitArgs;
use crate::client::SimpleClient;
use load::error::AppError;

/// Why the target is not ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{url} was not ready within {timeout:?}; last answer: {last}")]
    Timeout {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("interrupted while waiting for {url}")]
    Interrupted { url: String },
}

/// Poll `url` until it answers 200, for at most `timeout`.
pub async fn wait_ready(
    url: &str,
    timeout: Duration,
    interval: Duration,
    shutdown: &CancellationToken,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let attempt_timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut last;
    loop {
        // A fresh client per attempt: behind a Service each attempt may reach another pod.
        let client = SimpleClient::new(attempt_timeout);
        match client.get(url).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => {
                last = format!(
                    "status {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )
            }
            Err(e) => last = e.to_string(),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                url: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(WaitError::Interrupted { url: url.to_string() }),
            _ = tokio::time::sleep(interval.min(deadline - now)) => {}
        }
    }
}

/// `generator wait`: 0 once ready, 3 on timeout, 5 when interrupted, 2 on a bad URL.
pub(crate) async fn wait_command(
    args: WaitArgs,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let base = crate::targets::Target::parse(&args.url)
        .map_err(AppError::usage)?
        .url;
    let url = format!("{base}{}", args.ready_path);
    eprintln!(
        "waiting up to {} for {url} to answer 200",
        humantime::format_duration(args.timeout)
    );
    wait_ready(&url, args.timeout, args.interval, &shutdown).await?;
    eprintln!("{url} is ready");
    Ok(())
}

impl From<WaitError> for AppError {
    fn from(e: WaitError) -> AppError {
        match e {
            WaitError::Timeout { .. } => AppError::TargetNotReady(e.to_string()),
            WaitError::Interrupted { .. } => AppError::Interrupted(e.to_string()),
        }
    }
}
