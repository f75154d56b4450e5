//! Shared helpers of the consumer's integration tests: an in-process server on port 0 with a JSON client, requests
//! sent in the background, bounded waits on the load figures of `GET /`, and the lock that lets a test that saturates
//! every core run alone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, oneshot};
use tokio::task::JoinHandle;

/// Tests share the machine (read guard); a test that burns every core on purpose takes it alone (write guard), so
/// that it neither slows the timing of the others nor is slowed by them. Fair: a waiting writer is not starved.
static MACHINE: RwLock<()> = RwLock::const_new(());

/// Held for the duration of an ordinary test.
pub async fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

/// Held for the duration of a test that saturates every core.
pub async fn whole_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// A JSON answer: status, headers and body (a JSON string when the body is not JSON).
pub type Answer = (StatusCode, reqwest::header::HeaderMap, Value);

/// A consumer served in-process on 127.0.0.1:0.
pub struct Server {
    pub url: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), consumer::ConsumerError>>>,
    _machine: RwLockReadGuard<'static, ()>,
}

impl Server {
    /// Starts a consumer with `--pod-name test-pod` plus `args`.
    pub async fn start(args: &[&str]) -> Server {
        let machine = shared_machine().await;
        let mut argv = vec![
            "consumer",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pod-name",
            "test-pod",
        ];
        argv.extend_from_slice(args);
        let config = consumer::Config::from_args(argv).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(consumer::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        testkit::wait_http_ok(&format!("{url}/health"), Duration::from_secs(10))
            .await
            .expect("server up");
        Server {
            url,
            client,
            stop: Some(stop),
            handle: Some(handle),
            _machine: machine,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Triggers the drain (like SIGTERM) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Drains and waits for `serve` to return (bounded).
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(40), handle)
                .await
                .expect("serve returns within the grace period")
                .expect("serve task")
                .expect("serve result");
        }
    }

    /// Sends `POST path` with `body` in the background (for work that blocks); await the handle for its answer.
    pub fn post_in_background(&self, path: &str, body: &str) -> JoinHandle<Answer> {
        let request = self.client.post(self.url(path)).body(body.to_owned());
        tokio::spawn(async move { split(request.send().await.expect("POST")).await })
    }

    /// Polls `GET /` until `done` holds for its `load` figures (bounded); returns them.
    pub async fn wait_load(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (_, _, root) = self.get("/").await;
            if done(&root["load"]) {
                return root["load"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "load figures not reached within {timeout:?}: {root}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        split(response).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        split(response).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        let response = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        split(response).await
    }

    /// Polls `GET /jobs/{id}` until the job is finished (bounded).
    pub async fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (status, _, job) = self.get(&format!("/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if ["done", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not finish in {timeout:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

pub async fn split(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}
