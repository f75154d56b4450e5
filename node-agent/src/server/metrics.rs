//! `GET /metrics/resource`, the kubelet's resource metrics as metrics-server reads them (the upstream names and
//! labels, each sample with its timestamp): CPU seconds and memory working set of the node, of each pod and each
//! running container, from their cgroups; and `GET /pods`, the pods this node runs.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api as KubeApi, ListParams};

use super::Api;

/// The kubelet's metric names (an upstream contract: metrics-server parses exactly these).
pub mod names {
    pub const NODE_CPU: &str = "node_cpu_usage_seconds_total";
    pub const NODE_MEMORY: &str = "node_memory_working_set_bytes";
    pub const POD_CPU: &str = "pod_cpu_usage_seconds_total";
    pub const POD_MEMORY: &str = "pod_memory_working_set_bytes";
    pub const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total";
    pub const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";
    pub const CONTAINER_START: &str = "container_start_time_seconds";
    pub const SCRAPE_ERROR: &str = "resource_scrape_error";
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// The machine's CPU time (all CPUs, not idle or iowait) in seconds, from /proc/stat.
fn node_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(8)
        .map(|(_, v)| *v)
        .sum();
    // USER_HZ is 100 on every Linux the project runs on.
    Some(busy as f64 / 100.0)
}

/// The machine's working set: total minus available memory.
fn node_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((kib("MemTotal:")? - kib("MemAvailable:")?) * 1024)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
}

pub async fn resource(State(api): State<Api>) -> Response {
    let ts = now_ms();
    let mut out = String::new();
    let mut error = 0;
    header(
        &mut out,
        names::CONTAINER_CPU,
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    let pods = api.agent.registry.all();
    let mut memory_lines = String::new();
    let mut start_lines = String::new();
    let mut pod_cpu = String::new();
    let mut pod_memory = String::new();
    for ((namespace, pod), entry) in &pods {
        for (container, c) in entry.containers.iter().filter(|(_, c)| c.running) {
            let labels =
                format!("container=\"{container}\",namespace=\"{namespace}\",pod=\"{pod}\"");
            match (c.group.cpu_usage_nanos(), c.group.memory_working_set()) {
                (Some(cpu), Some(mem)) => {
                    let _ = writeln!(
                        out,
                        "{}{{{labels}}} {} {ts}",
                        names::CONTAINER_CPU,
                        cpu as f64 / 1e9
                    );
                    let _ = writeln!(
                        memory_lines,
                        "{}{{{labels}}} {mem} {ts}",
                        names::CONTAINER_MEMORY
                    );
                    if let Some(start) = c.started_at {
                        let _ = writeln!(
                            start_lines,
                            "{}{{{labels}}} {start} {ts}",
                            names::CONTAINER_START
                        );
                    }
                }
                _ => error = 1,
            }
        }
        let labels = format!("namespace=\"{namespace}\",pod=\"{pod}\"");
        if let (Some(cpu), Some(mem)) = (
            entry.group.cpu_usage_nanos(),
            entry.group.memory_working_set(),
        ) {
            let _ = writeln!(
                pod_cpu,
                "{}{{{labels}}} {} {ts}",
                names::POD_CPU,
                cpu as f64 / 1e9
            );
            let _ = writeln!(pod_memory, "{}{{{labels}}} {mem} {ts}", names::POD_MEMORY);
        }
    }
    header(
        &mut out,
        names::CONTAINER_MEMORY,
        "gauge",
        "Current working set of the container in bytes",
    );
    out.push_str(&memory_lines);
    header(
        &mut out,
        names::CONTAINER_START,
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    out.push_str(&start_lines);
    header(
        &mut out,
        names::NODE_CPU,
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    if let Some(cpu) = node_cpu_seconds() {
        let _ = writeln!(out, "{} {cpu} {ts}", names::NODE_CPU);
    }
    header(
        &mut out,
        names::NODE_MEMORY,
        "gauge",
        "Current working set of the node in bytes",
    );
    if let Some(mem) = node_memory_bytes() {
        let _ = writeln!(out, "{} {mem} {ts}", names::NODE_MEMORY);
    }
    header(
        &mut out,
        names::POD_CPU,
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    out.push_str(&pod_cpu);
    header(
        &mut out,
        names::POD_MEMORY,
        "gauge",
        "Current working set of the pod in bytes",
    );
    out.push_str(&pod_memory);
    header(
        &mut out,
        names::SCRAPE_ERROR,
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    let _ = writeln!(out, "{} {error}", names::SCRAPE_ERROR);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// The pods bound to this node, as a PodList (from the API server: the agent's view is the API's).
pub async fn pods(State(api): State<Api>) -> Response {
    let pods: KubeApi<Pod> = KubeApi::all(api.agent.client.clone());
    let params = ListParams::default().fields(&format!(
        "spec.nodeName={}",
        api.agent.config.args.node_name
    ));
    match pods.list(&params).await {
        Ok(list) => axum::Json(serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "items": list.items,
        }))
        .into_response(),
        Err(e) => (http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
