//! The dynamic set of target base URLs a run spreads its requests over, round-robin, as a Service would. The set can
//! change while a run goes on (the lab adds a replica once it is ready and removes it before stopping it).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Why a URL cannot be a target.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TargetError {
    #[error("target URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
}

/// One target: a base URL `http://host:port` (a path prefix is allowed and prepended to every request path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, without a trailing slash.
    pub url: String,
    /// `host:port` to connect to and send as `Host`.
    pub authority: String,
    /// Path prefix (empty or starting with `/`, no trailing slash).
    pub prefix: String,
    /// `authority` as a ready `Host` header value (built once, not per request).
    pub host_header: http::HeaderValue,
}

impl Target {
    /// Parse a base URL. Only `http` is supported: the generator talks to Services and pods inside the cluster.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let bad = |reason: &str| TargetError::Invalid {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; use the plain-http Service URL",
                ));
            }
            Some(_) => return Err(bad("scheme must be http")),
            None => return Err(bad("needs a scheme, e.g. http://consumer:8080")),
        }
        let host = uri.host().ok_or_else(|| bad("needs a host"))?;
        if uri.query().is_some() {
            return Err(bad("a base URL cannot carry a query string"));
        }
        let port = uri.port_u16().unwrap_or(80);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let prefix = uri.path().trim_end_matches('/').to_string();
        let host_header = http::HeaderValue::from_str(&authority)
            .map_err(|_| bad("host is not a valid header value"))?;
        Ok(Target {
            url: format!("http://{authority}{prefix}"),
            authority,
            prefix,
            host_header,
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    targets: RwLock<Arc<Vec<Arc<Target>>>>,
    next: AtomicUsize,
    generation: AtomicU64,
}

/// A cloneable handle on the current set of targets. Every clone sees the same set; changes apply to the next request.
#[derive(Debug, Clone, Default)]
pub struct TargetSet {
    inner: Arc<Inner>,
}

impl TargetSet {
    /// A set from base URLs (may be empty: requests then fail as connect errors until a target is added).
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<TargetSet, TargetError> {
        let set = TargetSet::default();
        set.replace(urls)?;
        Ok(set)
    }

    /// A set with one target.
    pub fn single(url: &str) -> Result<TargetSet, TargetError> {
        TargetSet::new(&[url])
    }

    fn store(&self, targets: Vec<Arc<Target>>) {
        *self.inner.targets.write().expect("target lock") = Arc::new(targets);
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Replace the whole set.
    pub fn replace<S: AsRef<str>>(&self, urls: &[S]) -> Result<(), TargetError> {
        let mut targets = Vec::new();
        for u in urls {
            let t = Arc::new(Target::parse(u.as_ref())?);
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        self.store(targets);
        Ok(())
    }

    /// Add a target (no-op when already present).
    pub fn add(&self, url: &str) -> Result<(), TargetError> {
        let t = Arc::new(Target::parse(url)?);
        let mut v = self.snapshot().as_ref().clone();
        if !v.contains(&t) {
            v.push(t);
            self.store(v);
        }
        Ok(())
    }

    /// Remove a target; returns whether it was present. In-flight requests to it finish; no new ones start.
    pub fn remove(&self, url: &str) -> bool {
        let Ok(t) = Target::parse(url) else {
            return false;
        };
        let mut v = self.snapshot().as_ref().clone();
        let before = v.len();
        v.retain(|x| **x != t);
        let removed = v.len() != before;
        if removed {
            self.store(v);
        }
        removed
    }

    /// The current targets.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Target>>> {
        self.inner.targets.read().expect("target lock").clone()
    }

    /// The current base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.snapshot().iter().map(|t| t.url.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bumped on every change, so connection caches can drop connections to removed targets.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The next target, round-robin over the current set.
    pub fn next(&self) -> Option<Arc<Target>> {
        let v = self.snapshot();
        if v.is_empty() {
            return None;
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        Some(v[i % v.len()].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let t = Target::parse("http://consumer:8080/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("consumer:8080", "")
        );
        let t = Target::parse("http://127.0.0.1/api/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("127.0.0.1:80", "/api")
        );
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("consumer:8080").is_err());
        assert!(Target::parse("http://x/?a=b").is_err());
    }

    #[test]
    fn round_robin_and_changes() {
        let set = TargetSet::new(&["http://a:1", "http://b:1"]).unwrap();
        let clone = set.clone();
        let picks: Vec<_> = (0..4)
            .map(|_| set.next().unwrap().authority.clone())
            .collect();
        assert_eq!(picks, ["a:1", "b:1", "a:1", "b:1"]);
        let g = set.generation();
        clone.add("http://c:1").unwrap();
        assert!(set.generation() > g);
        assert_eq!(set.len(), 3);
        assert!(set.remove("http://a:1"));
        assert!(!set.remove("http://a:1"));
        assert_eq!(set.urls(), ["http://b:1", "http://c:1"]);
    }
}
