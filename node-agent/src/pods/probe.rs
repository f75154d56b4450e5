//! Probes and hooks as the kubelet runs them: `httpGet` (from the node to the pod's address; 200-399 passes;
//! https without verification), `tcpSocket` (a connection opens), `grpc` (grpc.health.v1 answers SERVING) and
//! `exec` (a command inside the container exits 0), each within its timeout. [`Prober`] keeps the counts against
//! `successThreshold` and `failureThreshold`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::shim::ExecInto;

/// Where and as whom a probe or hook runs.
pub struct Target<'a> {
    pub pod_ip: Ipv4Addr,
    pub container: &'a Container,
    /// For exec: the `node-agent` binary, the container's main pid and identity, and a scratch directory.
    pub agent: &'a Path,
    pub exec: Option<ExecInto>,
    pub scratch: &'a Path,
}

/// Why a probe type cannot be run (a pod-level error, not a failed probe).
pub fn check_supported(probe: &Probe) -> Result<(), String> {
    if probe.http_get.is_some()
        || probe.tcp_socket.is_some()
        || probe.grpc.is_some()
        || probe.exec.is_some()
    {
        Ok(())
    } else {
        Err(
            "the probe has no handler the node agent supports (httpGet, tcpSocket, grpc, exec)"
                .into(),
        )
    }
}

fn port_of(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("port {p} is out of range")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}"))
        }
    }
}

/// Runs one probe (or hook) once; `Ok` when it passed, `Err` with what was seen.
pub async fn run(
    handler: &Handler<'_>,
    target: &Target<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let work = async {
        match handler {
            Handler::Http(h) => http(h, target).await,
            Handler::Tcp(t) => tcp(t, target).await,
            Handler::Grpc(g) => grpc(g, target).await,
            Handler::Exec(e) => exec(e, target, timeout).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// A probe's or hook's action.
pub enum Handler<'a> {
    Http(&'a HTTPGetAction),
    Tcp(&'a TCPSocketAction),
    Grpc(&'a GRPCAction),
    Exec(&'a ExecAction),
}

impl<'a> Handler<'a> {
    pub fn of(probe: &'a Probe) -> Option<Handler<'a>> {
        if let Some(h) = &probe.http_get {
            Some(Handler::Http(h))
        } else if let Some(t) = &probe.tcp_socket {
            Some(Handler::Tcp(t))
        } else if let Some(g) = &probe.grpc {
            Some(Handler::Grpc(g))
        } else {
            probe.exec.as_ref().map(Handler::Exec)
        }
    }
}

async fn http(h: &HTTPGetAction, target: &Target<'_>) -> Result<(), String> {
    let port = port_of(&h.port, target.container)?;
    let host = h
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.to_string());
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let url = format!("{scheme}://{host}:{port}{path}");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent(concat!("kube-probe/node-agent-", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(&url);
    for header in h.http_headers.as_deref().unwrap_or_default() {
        request = request.header(&header.name, &header.value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("Get {url:?}: {}", error_chain(&e)))?;
    let code = response.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn tcp(t: &TCPSocketAction, target: &Target<'_>) -> Result<(), String> {
    let port = port_of(&t.port, target.container)?;
    let host = t
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.to_string());
    tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map(drop)
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
}

async fn grpc(g: &GRPCAction, target: &Target<'_>) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let port = u16::try_from(g.port).map_err(|_| format!("port {} is out of range", g.port))?;
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}:{port}", target.pod_ip))
            .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| {
        format!(
            "failed to connect service {}:{port} within timeout: {}",
            target.pod_ip,
            error_chain(&e)
        )
    })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: g.service.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| format!("health rpc failed: {}", s.message()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!(
            "service unhealthy (responded with \"{}\")",
            other.as_str_name()
        )),
    }
}

async fn exec(e: &ExecAction, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    let command = e.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Err("exec has no command".into());
    }
    let Some(mut spec) = target.exec.clone() else {
        return Err("the container is not running".into());
    };
    spec.command = command;
    std::fs::create_dir_all(target.scratch).map_err(|e| e.to_string())?;
    let file = target.scratch.join(format!(
        "exec-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::write(&file, serde_json::to_vec(&spec).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let output = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(target.agent)
            .arg("shim-exec")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    if let Err(e) = crate::host::remove_path(&file) {
        tracing::warn!("{e}");
    }
    let output = output
        .map_err(|_| format!("command timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(format!(
            "command {:?} exited with {}: {}",
            spec.command,
            output.status.code().unwrap_or(-1),
            text.trim()
        ))
    }
}

/// A probe's settings with the kubelet's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Settings {
    pub fn of(probe: &Probe) -> Settings {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        Settings {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive results against the thresholds: `Some(true/false)` when the probe's verdict changes.
#[derive(Debug, Clone)]
pub struct Prober {
    settings: Settings,
    successes: u32,
    failures: u32,
    verdict: Option<bool>,
}

impl Prober {
    pub fn new(settings: Settings) -> Prober {
        Prober {
            settings,
            successes: 0,
            failures: 0,
            verdict: None,
        }
    }

    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if passed {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.settings.success_threshold && self.verdict != Some(true) {
                self.verdict = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.settings.failure_threshold && self.verdict != Some(false) {
                self.verdict = Some(false);
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_turn_the_verdict() {
        let mut p = Prober::new(Settings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        });
        assert_eq!(p.record(true), None);
        assert_eq!(p.record(true), Some(true));
        assert_eq!(p.record(true), None);
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(true), None, "a success resets the failures");
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(false), Some(false));
    }
}
