//! Reading the pods for the direct source: where to scrape (every address of a headless Service, resolved on every
//! poll, or fixed URLs, http or https) and one scrape of a `/metrics` page, keeping only the consumer series the
//! triggers read (names from `contract`).

use std::collections::HashSet;

use contract::metrics::consumer::{
    ALLOCATED_BYTES_TOTAL, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL, JOBS_QUEUED,
    JOBS_RUNNING, PROCESS_START_TIME_SECONDS,
};

use crate::client::error_chain;
use crate::exposition::{self, Sample};
use crate::trigger::DirectTargets;
use crate::trigger::promql::bucket_series;

/// Largest `/metrics` page accepted from one pod.
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// Whether a scraped series is one the direct source keeps (everything else is dropped while parsing).
pub fn is_kept(name: &str) -> bool {
    [
        HTTP_REQUESTS_TOTAL.name,
        ALLOCATED_BYTES_TOTAL.name,
        JOBS_QUEUED.name,
        JOBS_RUNNING.name,
        PROCESS_START_TIME_SECONDS.name,
    ]
    .contains(&name)
        || name == bucket_series(&HTTP_REQUEST_DURATION_SECONDS)
}

/// Where to scrape: `(instance, url)` pairs. A DNS name is resolved on every poll, so pods coming and going are followed.
pub async fn resolve(targets: &DirectTargets) -> Result<Vec<(String, String)>, String> {
    match targets {
        DirectTargets::Urls(urls) => Ok(urls
            .iter()
            .map(|url| {
                let instance = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| {
                        u.host_str()
                            .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(80)))
                    })
                    .unwrap_or_else(|| url.clone());
                (instance, url.clone())
            })
            .collect()),
        DirectTargets::Dns { host, port } => {
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?;
            let mut seen = HashSet::new();
            let mut pods = Vec::new();
            for addr in addrs {
                if seen.insert(addr) {
                    pods.push((addr.to_string(), format!("http://{addr}/metrics")));
                }
            }
            if pods.is_empty() {
                return Err(format!("{host} resolved to no address"));
            }
            pods.sort();
            Ok(pods)
        }
    }
}

/// Scrapes one `/metrics` page, keeping the metrics the triggers need.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<Vec<Sample>, String> {
    let response = client
        .get(url)
        .header("accept", "text/plain;version=0.0.4")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|len| len as usize > MAX_PAGE_BYTES)
    {
        return Err(format!(
            "GET {url}: page larger than {MAX_PAGE_BYTES} bytes"
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if body.len() > MAX_PAGE_BYTES {
        return Err(format!(
            "GET {url}: page larger than {MAX_PAGE_BYTES} bytes"
        ));
    }
    let text = String::from_utf8_lossy(&body);
    exposition::parse(&text, is_kept).map_err(|e| format!("GET {url}: not Prometheus text: {e}"))
}
