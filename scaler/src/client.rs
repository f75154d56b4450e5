//! The HTTP clients the sources poll with, and how their errors read. `https` is verified with rustls against the
//! system's roots plus the PEM bundle of `--ca-file` (a private CA for an in-cluster Prometheus); a trigger with
//! `unsafeSsl: "true"` gets the client that skips verification, as KEDA's own Prometheus trigger does.

use std::path::Path;
use std::time::Duration;

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The two clients every source shares (connection pools are per client).
#[derive(Debug, Clone)]
pub struct Clients {
    verified: reqwest::Client,
    unverified: reqwest::Client,
}

impl Clients {
    /// Builds both clients; `timeout` bounds every request and connect.
    pub fn new(timeout: Duration, ca_file: Option<&Path>) -> Result<Clients, ClientError> {
        let extra_roots = match ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .pool_max_idle_per_host(64)
        };
        let verified = builder()
            .tls_certs_merge(extra_roots)
            .build()
            .map_err(|e| ClientError::Build(error_chain(&e)))?;
        let unverified = builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| ClientError::Build(error_chain(&e)))?;
        Ok(Clients {
            verified,
            unverified,
        })
    }

    /// The client for a source: verifying, or not (`unsafeSsl`).
    pub fn for_source(&self, unsafe_ssl: bool) -> &reqwest::Client {
        if unsafe_ssl {
            &self.unverified
        } else {
            &self.verified
        }
    }
}

/// Reads a PEM bundle of CA certificates; an unreadable file or one without a certificate is an error.
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let fail = |reason: String| ClientError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail(format!("not a PEM bundle: {}", error_chain(&e))))?;
    if certificates.is_empty() {
        return Err(fail(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// An error with its sources, e.g. "error sending request: connection refused", or for TLS "... invalid peer
/// certificate: UnknownIssuer": the cause is what an operator needs in UNAVAILABLE messages and `/explain`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let missing = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = read_ca_file(&empty).unwrap_err().to_string();
        assert!(
            error.contains("no PEM certificate") || error.contains("not a PEM bundle"),
            "{error}"
        );
        assert!(Clients::new(Duration::from_secs(1), Some(&empty)).is_err());
        assert!(Clients::new(Duration::from_secs(1), None).is_ok());
    }
}
