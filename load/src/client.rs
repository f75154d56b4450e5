//! HTTP/1.1 client plumbing on hyper's connection API: keep-alive connections owned by one worker each (no pool lock
//! on the hot path), recycled by age and request count so new replicas behind a Service get traffic, and errors
//! classified into the report's outcome classes. Also a small one-shot client for probes, cleanup and monitoring.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::model::Outcome;
use crate::targets::{Target, TargetSet};

const SERVED_BY: HeaderName = HeaderName::from_static(contract::headers::SERVED_BY);
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// When to replace a keep-alive connection by a fresh one. A Service balances per connection, so without
/// recycling a running test never reaches replicas that start after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecyclePolicy {
    /// Close a connection once it is this old (checked before each request).
    pub max_age: Option<Duration>,
    /// Close a connection after this many requests.
    pub max_requests: Option<u64>,
}

impl RecyclePolicy {
    /// The profiles' default: reconnect every 5 s or 500 requests.
    pub fn profile_default() -> RecyclePolicy {
        RecyclePolicy {
            max_age: Some(Duration::from_secs(5)),
            max_requests: Some(500),
        }
    }
}

/// A request ready to send to any target: method, path, body and extra headers, built once per mix entry.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub method: Method,
    pub path: String,
    uri: Uri,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl PreparedRequest {
    pub fn new(
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<PreparedRequest, http::Error> {
        let uri: Uri = path.parse()?;
        Ok(PreparedRequest {
            method,
            path: path.to_string(),
            uri,
            body: body.unwrap_or_default(),
            headers,
        })
    }

    fn build(
        &self,
        target: &Target,
        traceparent: Option<&HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let uri = if target.prefix.is_empty() {
            self.uri.clone()
        } else {
            format!("{}{}", target.prefix, self.path).parse()?
        };
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .header(HOST, target.host_header.clone())
            .header(
                USER_AGENT,
                concat!("autoscaling-lab-generator/", env!("CARGO_PKG_VERSION")),
            );
        if !self.body.is_empty() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if let Some(tp) = traceparent {
            b = b.header(TRACEPARENT, tp);
        }
        b.body(Full::new(self.body.clone()))
    }
}

struct Connection {
    authority: String,
    sender: http1::SendRequest<Full<Bytes>>,
    created: Instant,
    uses: u64,
}

async fn connect(authority: &str) -> std::io::Result<Connection> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes; its error is already seen by the sender.
        let _ = conn.await;
    });
    Ok(Connection {
        authority: authority.to_string(),
        sender,
        created: Instant::now(),
        uses: 0,
    })
}

/// The result of one request.
#[derive(Debug, Clone)]
pub struct Executed {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub served_by: Option<HeaderValue>,
    /// Connections opened for this request (0 when a kept-alive one was reused).
    pub connects: u32,
}

impl Executed {
    fn failed(outcome: Outcome, connects: u32) -> Executed {
        Executed {
            outcome,
            status: None,
            served_by: None,
            connects,
        }
    }
}

/// The keep-alive connections of one worker, at most one per target.
pub struct ConnCache {
    conns: Vec<Connection>,
    generation: u64,
    recycle: RecyclePolicy,
}

impl std::fmt::Debug for ConnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCache")
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl ConnCache {
    pub fn new(recycle: RecyclePolicy) -> ConnCache {
        ConnCache {
            conns: Vec::new(),
            generation: u64::MAX,
            recycle,
        }
    }

    /// Drop connections to targets that left the set.
    pub fn sync_with(&mut self, set: &TargetSet) {
        let g = set.generation();
        if g != self.generation {
            let current = set.snapshot();
            self.conns
                .retain(|c| current.iter().any(|t| t.authority == c.authority));
            self.generation = g;
        }
    }

    fn take(&mut self, authority: &str) -> Option<Connection> {
        let i = self.conns.iter().position(|c| c.authority == authority)?;
        let c = self.conns.swap_remove(i);
        let too_old = self
            .recycle
            .max_age
            .is_some_and(|age| c.created.elapsed() >= age);
        let too_used = self.recycle.max_requests.is_some_and(|n| c.uses >= n);
        if too_old || too_used || c.sender.is_closed() {
            return None;
        }
        Some(c)
    }

    /// Send `req` to `target` within `timeout` (connect included) and read the whole response.
    pub async fn execute(
        &mut self,
        target: &Target,
        req: &PreparedRequest,
        timeout: Duration,
        traceparent: Option<&HeaderValue>,
    ) -> Executed {
        let mut connects = 0;
        let work = async {
            let mut reused = self.take(&target.authority);
            // At most one retry: a kept-alive connection the server closed while idle fails before the request is
            // processed, so sending again on a fresh connection is safe.
            for attempt in 0..2 {
                let was_reused = reused.is_some();
                let mut conn = match reused.take() {
                    Some(c) => c,
                    None => {
                        connects += 1;
                        match connect(&target.authority).await {
                            Ok(c) => c,
                            Err(_) => return Executed::failed(Outcome::ConnectError, connects),
                        }
                    }
                };
                let request = match req.build(target, traceparent) {
                    Ok(r) => r,
                    Err(_) => return Executed::failed(Outcome::OtherError, connects),
                };
                if conn.sender.ready().await.is_err() {
                    if was_reused && attempt == 0 {
                        continue;
                    }
                    return Executed::failed(Outcome::OtherError, connects);
                }
                conn.uses += 1;
                let response = match conn.sender.send_request(request).await {
                    Ok(r) => r,
                    Err(e) => {
                        if was_reused
                            && attempt == 0
                            && (e.is_canceled() || e.is_incomplete_message() || e.is_closed())
                        {
                            continue;
                        }
                        return Executed::failed(Outcome::OtherError, connects);
                    }
                };
                let status = response.status().as_u16();
                let served_by = response.headers().get(SERVED_BY).cloned();
                let keep = !response
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let mut body = response.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        return Executed::failed(Outcome::OtherError, connects);
                    }
                }
                if keep && !conn.sender.is_closed() {
                    self.conns.push(conn);
                }
                let outcome = match status {
                    429 => Outcome::Throttled,
                    s if s >= 400 => Outcome::HttpError,
                    _ => Outcome::Ok,
                };
                return Executed {
                    outcome,
                    status: Some(status),
                    served_by,
                    connects,
                };
            }
            Executed::failed(Outcome::OtherError, connects)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            // The timed-out connection is dropped with the future: it is in an unknown state.
            Err(_) => Executed::failed(Outcome::Timeout, connects),
        }
    }
}

/// Errors of the one-shot client.
#[derive(Debug, thiserror::Error)]
pub enum SimpleError {
    #[error("bad URL {0:?}")]
    Url(String),
    #[error("{0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A small client for probes, cleanup calls and monitoring (not the load path).
#[derive(Clone)]
pub struct SimpleClient {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    timeout: Duration,
}

impl std::fmt::Debug for SimpleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SimpleClient {
    pub fn new(timeout: Duration) -> SimpleClient {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(10))
                .build_http();
        SimpleClient { client, timeout }
    }

    /// Send a request and read the whole answer.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(u16, Bytes), SimpleError> {
        let uri: Uri = url.parse().map_err(|_| SimpleError::Url(url.to_string()))?;
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let body = match body {
            Some(v) => {
                b = b.header(CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b
            .body(Full::new(body))
            .map_err(|e| SimpleError::Http(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SimpleError::Http(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SimpleError::Http(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| SimpleError::Timeout(self.timeout))?
    }

    pub async fn get(&self, url: &str) -> Result<(u16, Bytes), SimpleError> {
        self.request(Method::GET, url, None, &[]).await
    }
}

/// An error with its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
