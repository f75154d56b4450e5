//! Pod start latency on a running cluster, as SIG Scalability measures it: from a pod's creation to the moment a
//! watch observes it Ready (its containers started), for a Deployment scaled from 0 to N at once; p50, p99 and max per
//! N, against the SLO of p99 <= 5 s. Figures, not a gate (bench/cluster/run.sh runs it).
//!
//! Usage: pod_start_latency KUBECONFIG N [N...]   (each N: a fresh namespace, N pods, removed afterwards)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt as _};

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn measure(client: &Client, n: usize) -> Result<serde_json::Value, String> {
    let ns = format!("bench-start-{n}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .map_err(|e| e.to_string())?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| e.to_string())?;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &ns);
    while accounts
        .get_opt("default")
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut events = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
    // The watch is established before the pods exist: its first event is the (empty) initial list.
    while let Some(e) = events.next().await {
        if matches!(e, Ok(Event::InitDone)) {
            break;
        }
    }
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleepers", "namespace": ns},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {
                "metadata": {"labels": {"app": "sleepers"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                    "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]
                }
            }
        }
    }))
    .map_err(|e| e.to_string())?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let asked = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .map_err(|e| e.to_string())?;
    let mut latencies: BTreeMap<String, f64> = BTreeMap::new();
    // creationTimestamp has whole seconds: the watch's first sight of a pod times it precisely too.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut observed_latencies: Vec<f64> = Vec::new();
    let deadline = Duration::from_secs(600);
    while latencies.len() < n && asked.elapsed() < deadline {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
        let Ok(Some(Ok(Event::Apply(pod) | Event::InitApply(pod)))) = event else {
            continue;
        };
        let seen = *first_seen
            .entry(pod.name_any())
            .or_insert_with(Instant::now);
        if !ready(&pod) || latencies.contains_key(&pod.name_any()) {
            continue;
        }
        observed_latencies.push(seen.elapsed().as_secs_f64());
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .ok_or("a pod without creationTimestamp")?;
        let observed = k8s_openapi::jiff::Timestamp::now();
        let seconds = (observed.as_nanosecond() - created.as_nanosecond()) as f64 / 1e9;
        latencies.insert(pod.name_any(), seconds);
    }
    let all_ready = asked.elapsed().as_secs_f64();
    let mut sorted: Vec<f64> = latencies.values().copied().collect();
    sorted.sort_by(f64::total_cmp);
    observed_latencies.sort_by(f64::total_cmp);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    while namespaces
        .get_opt(&ns)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(serde_json::json!({
        "pods": n,
        "ready": sorted.len(),
        "p50_s": percentile(&sorted, 0.50),
        "p99_s": percentile(&sorted, 0.99),
        "max_s": sorted.last().copied().unwrap_or(f64::NAN),
        "all_ready_after_s": all_ready,
        "seen_to_ready_p50_s": percentile(&observed_latencies, 0.50),
        "seen_to_ready_p99_s": percentile(&observed_latencies, 0.99),
        "slo_p99_5s": percentile(&sorted, 0.99) <= 5.0 && sorted.len() == n,
    }))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: pod_start_latency KUBECONFIG N [N...]");
        std::process::exit(2);
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(&args[1]).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");
    for n in &args[2..] {
        let n: usize = n.parse().expect("a pod count");
        match measure(&client, n).await {
            Ok(result) => println!("{result}"),
            Err(e) => {
                eprintln!("pods={n}: {e}");
                std::process::exit(1);
            }
        }
    }
}
