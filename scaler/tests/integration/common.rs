//! Shared helpers of the scaler's integration tests: run the scaler in-process on ephemeral ports, talk to it with the
//! tonic client generated from the repo's proto, run real consumers and drive load into them.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use keda_proto::external_scaler_client::ExternalScalerClient;
use keda_proto::{GetMetricsRequest, ScaledObjectRef};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A scaler served in-process by `scaler::serve` on 127.0.0.1:0.
pub struct Scaler {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), scaler::ScalerError>>>,
}

impl Scaler {
    /// Starts with these flags (as on the command line) after `--host 127.0.0.1`.
    pub async fn start(args: &[&str]) -> Scaler {
        let mut argv = vec!["scaler", "--host", "127.0.0.1"];
        argv.extend_from_slice(args);
        let config = scaler::Config::try_parse_from(argv).expect("valid test flags");
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(scaler::serve(grpc, http, config, async move {
            let _ = stopped.await;
        }));
        Scaler {
            grpc: grpc_addr,
            http: http_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect to the scaler");
        ExternalScalerClient::new(channel)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn explain(&self) -> serde_json::Value {
        reqwest::get(self.http_url("/explain"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `/explain` read through the typed contract (as the lab and the monitor read it).
    pub async fn explained(&self) -> contract::explain::Explain {
        reqwest::get(self.http_url("/explain"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.http_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops it and waits for a clean exit.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the scaler stops within 15 s")
                .expect("serve task not panicked");
            result.expect("serve returns Ok");
        }
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn scaled_object(name: &str, metadata: HashMap<String, String>) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.to_string(),
        namespace: "lab".to_string(),
        scaler_metadata: metadata,
    }
}

pub fn metrics_request(reference: &ScaledObjectRef, metric_name: &str) -> GetMetricsRequest {
    GetMetricsRequest {
        scaled_object_ref: Some(reference.clone()),
        metric_name: metric_name.to_string(),
    }
}

/// A real consumer on 127.0.0.1 (the workspace binary).
pub async fn consumer(port: u16) -> testkit::Spawned {
    let port = port.to_string();
    testkit::Spawned::start(
        testkit::bin_path("consumer"),
        &["--host", "127.0.0.1", "--port", &port, "--executors", "8"],
        &[],
        &["http"],
    )
    .await
    .expect("consumer starts (cargo build -p consumer first)")
}

/// Background load: `workers` tasks POSTing `body` to `url` back to back until stopped.
pub struct Load {
    token: CancellationToken,
    tasks: Vec<JoinHandle<u64>>,
}

impl Load {
    pub fn start(url: String, body: serde_json::Value, workers: usize) -> Load {
        Load::paced(url, body, workers, Duration::ZERO)
    }

    /// Like `start`, each worker pausing `pause` after every request.
    pub fn paced(url: String, body: serde_json::Value, workers: usize, pause: Duration) -> Load {
        let token = CancellationToken::new();
        let client = reqwest::Client::new();
        let tasks = (0..workers)
            .map(|_| {
                let (token, client, url, body) =
                    (token.clone(), client.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    let mut sent = 0;
                    while !token.is_cancelled() {
                        let request = client
                            .post(&url)
                            .json(&body)
                            .timeout(Duration::from_secs(10))
                            .send();
                        tokio::select! {
                            _ = token.cancelled() => break,
                            result = request => {
                                if result.is_err() {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                sent += 1;
                                if !pause.is_zero() {
                                    tokio::select! {
                                        _ = token.cancelled() => break,
                                        _ = tokio::time::sleep(pause) => {}
                                    }
                                }
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        Load { token, tasks }
    }

    /// Stops and returns how many requests were sent.
    pub async fn stop(self) -> u64 {
        self.token.cancel();
        let mut total = 0;
        for task in self.tasks {
            total += task.await.unwrap_or(0);
        }
        total
    }
}

/// Polls `check` until it returns Some, at most `timeout`; panics with `what` and the last observation otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if tokio::time::Instant::now() >= deadline {
                    panic!("{what}: not reached within {timeout:?}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample in exposition text, e.g. `scaler_source_polls_total{source="..."}`.
pub fn sample_value(text: &str, series_prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(series_prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}
