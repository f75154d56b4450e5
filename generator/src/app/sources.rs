//! The `--monitor` source chain: the Kubernetes API, then the scaler's `/explain` (reading only the monitored
//! ScaledObject), then Prometheus; the first that answers is used. With the Kubernetes API and a scaler URL, the
//! scaler is also read on every observation for the trigger readings (the signal phase).

use std::sync::Arc;

use crate::cli::RunArgs;
use crate::monitor::{
    ExplainSource, FallbackSource, KubeSource, KubeTarget, PrometheusSource, ReplicaSource,
    SignalTap,
};

pub(crate) fn namespace_default() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Build the `--monitor` source chain: Kubernetes API, then the scaler's /explain, then Prometheus.
pub async fn build_monitor(args: &RunArgs) -> Result<Arc<dyn ReplicaSource>, String> {
    let m = &args.monitor_opts;
    let namespace = m.namespace.clone().unwrap_or_else(namespace_default);
    let scaled_object = m
        .scaled_object
        .clone()
        .unwrap_or_else(|| m.deployment.clone());
    let kube_target = KubeTarget {
        namespace: namespace.clone(),
        deployment: m.deployment.clone(),
        hpa: Some(
            m.hpa
                .clone()
                .unwrap_or_else(|| format!("keda-hpa-{scaled_object}")),
        ),
        scaled_object: Some(scaled_object.clone()),
    };
    let mut sources: Vec<Arc<dyn ReplicaSource>> = Vec::new();
    let explain = m.scaler_url.as_ref().map(|url| {
        Arc::new(ExplainSource::new(
            url,
            &format!("{namespace}/{scaled_object}"),
        ))
    });
    let mut notes = Vec::new();
    let kube = match &m.kube_api_url {
        Some(url) => KubeSource::for_url(url, kube_target).map(Some),
        None => match KubeSource::infer(m.kubeconfig.as_deref(), kube_target).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if m.kubeconfig.is_some() => Err(e),
            Err(e) => {
                notes.push(format!("no Kubernetes config ({e})"));
                Ok(None)
            }
        },
    };
    match kube {
        Ok(Some(k)) => sources.push(Arc::new(k)),
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    let counts_from_cluster = !sources.is_empty();
    if let Some(e) = &explain {
        sources.push(e.clone());
    }
    if let Some(url) = &m.prometheus_url {
        sources.push(Arc::new(PrometheusSource::new(
            url,
            &namespace,
            &m.deployment,
        )));
    }
    if sources.is_empty() {
        return Err(format!(
            "--monitor has no source: {}; give --kube-api-url, --kubeconfig, --scaler-url or --prometheus-url",
            notes.join("; ")
        ));
    }
    let chain: Arc<dyn ReplicaSource> = if sources.len() == 1 {
        sources.pop().expect("one source")
    } else {
        Arc::new(FallbackSource::new(sources))
    };
    // With the Kubernetes API answering the counts, the scaler is still read every time for the trigger readings.
    Ok(match explain {
        Some(e) if counts_from_cluster => Arc::new(SignalTap::new(chain, e)),
        _ => chain,
    })
}

/// A Kubernetes client for the cluster faults, from the same flags as `--monitor`'s: `--kube-api-url` (no auth: a
/// `kubectl proxy`), else `--kubeconfig`, else in-cluster config / `$KUBECONFIG`.
pub async fn kube_client(m: &crate::cli::MonitorArgs) -> Result<kube::Client, String> {
    let namespace = m.namespace.clone().unwrap_or_else(namespace_default);
    let mut config = match (&m.kube_api_url, &m.kubeconfig) {
        (Some(url), _) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("bad API URL {url:?}: {e}"))?;
            kube::Config::new(uri)
        }
        (None, Some(path)) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?
        }
        (None, None) => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    config.default_namespace = namespace;
    // kube-rs retries 429/503/504 itself by default (up to 15 times, with delays up to 1000 s): an eviction a
    // disruption budget refuses would be retried far past the load. The chaos tasks retry it, bounded.
    config.default_retry = false;
    monitor::kube_api::bounded_client(config, std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())
}
