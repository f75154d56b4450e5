//! A real Prometheus server on 127.0.0.1 with temporary storage, for tests of scrapes, queries and dashboards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Spawned, wait_http_ok};

/// A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 with temporary storage, scraping `targets` as
/// job `consumer`. Killed on drop.
pub struct Prometheus {
    pub url: String,
    _process: Spawned,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .finish()
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `scrape_interval` and waits for `/-/ready`.
    pub async fn start(
        targets: &[SocketAddr],
        scrape_interval: Duration,
    ) -> Result<Prometheus, Error> {
        let dir = tempfile::tempdir()?;
        let interval = format!("{}ms", scrape_interval.as_millis().max(100));
        let target_list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: consumer\n    scrape_interval: {interval}\n    scrape_timeout: {interval}\n\
             \x20   static_configs:\n      - targets: [{target_list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;

        // Prometheus cannot report an ephemeral port, so take a free one and retry on the rare collision.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port();
            let listen = format!("--web.listen-address=127.0.0.1:{port}");
            let storage = format!("--storage.tsdb.path={}", dir.path().join("data").display());
            let config_arg = format!("--config.file={}", config_path.display());
            let spawned = Spawned::start(
                prometheus_binary(),
                &[
                    &config_arg,
                    &storage,
                    &listen,
                    "--log.level=warn",
                    "--web.enable-lifecycle",
                ],
                &[],
                &[],
            )
            .await?;
            let url = format!("http://127.0.0.1:{port}");
            match wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(20)).await {
                Ok(()) => {
                    return Ok(Prometheus {
                        url,
                        _process: spawned,
                        _dir: dir,
                        client: reqwest::Client::new(),
                    });
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Runs an instant query and returns the `data.result` array.
    pub async fn query(&self, promql: &str) -> Result<serde_json::Value, Error> {
        let fail = |reason: String| Error::Query {
            query: promql.to_string(),
            reason,
        };
        let resp = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body: serde_json::Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        if body["status"] != "success" {
            return Err(fail(body.to_string()));
        }
        Ok(body["data"]["result"].clone())
    }

    /// Re-runs `promql` until `pred` accepts its result, at most `timeout`.
    pub async fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let result = self.query(promql).await?;
            if pred(&result) {
                return Ok(result);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Condition {
                    query: promql.to_string(),
                    timeout,
                    last: result.to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn prometheus_binary() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// A port that was free a moment ago on 127.0.0.1. Only for programs that cannot take port 0 themselves.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prometheus_starts_and_scrapes_itself_or_reports_why() {
        if !prometheus_binary().exists() {
            panic!("prometheus is not installed: run scripts/setup.sh");
        }
        let prom = Prometheus::start(&[], Duration::from_millis(500))
            .await
            .expect("prometheus");
        let result = prom.query("vector(1)").await.expect("query");
        assert_eq!(result[0]["value"][1], "1");
    }
}
