//! Readiness waits over HTTP: poll a URL until it answers 2xx, or until its JSON satisfies a condition, instead of
//! sleeping.

use std::time::Duration;

use crate::Error;

/// Polls `url` until it answers 2xx, at most `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!("status {}", resp.status()),
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotReady {
                url: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `url` until `pred` accepts its JSON body, at most `timeout`; the answer that satisfied it is returned.
/// For waiting on a service's own state (jobs, workers) instead of sleeping.
pub async fn poll_json(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) => match resp.json::<serde_json::Value>().await {
                Ok(body) if pred(&body) => return Ok(body),
                Ok(body) => body.to_string(),
                Err(err) => err.to_string(),
            },
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Condition {
                query: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
