//! The lab's stand-in for KEDA's operator and metrics adapter: it asks the external scaler over gRPC exactly
//! as KEDA does (GetMetricSpec for the target, GetMetrics for the value, IsActive or, for `external-push`
//! triggers, a held-open StreamIsActive) with each trigger's metadata, rewritten for local runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscaler::{MetricType, Observation, Reading, TriggerConfig};
use keda_proto::external_scaler_client::ExternalScalerClient;
use keda_proto::{GetMetricsRequest, ScaledObjectRef};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Metadata keys whose values are durations that `--time-scale` shrinks.
fn is_duration_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "window" || k.ends_with("window") || k.ends_with("period") || k.ends_with("interval")
}

/// A trigger's metadata for a local run: `scalerAddress` points at the lab's scaler, `targets` (direct
/// scrape) lists the ready replicas instead of a headless Service, and duration values are time-scaled
/// (whole seconds, at least 1 s, as the scaler requires).
pub fn local_metadata(
    trigger: &TriggerConfig,
    scaler_addr: &str,
    ready_urls: Option<&[String]>,
    time_scale: f64,
) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = trigger.metadata.clone().into_iter().collect();
    if metadata.contains_key("scalerAddress") {
        metadata.insert("scalerAddress".into(), scaler_addr.to_string());
    }
    if let Some(urls) = ready_urls
        && metadata.contains_key("targets")
    {
        metadata.insert("targets".into(), urls.join(","));
    }
    if (time_scale - 1.0).abs() > f64::EPSILON {
        for (key, value) in metadata.iter_mut() {
            if !is_duration_key(key) {
                continue;
            }
            let parsed = value
                .parse::<u64>()
                .map(Duration::from_secs)
                .or_else(|_| humantime::parse_duration(value));
            if let Ok(d) = parsed {
                let secs = (d.as_secs_f64() * time_scale).round().max(1.0) as u64;
                *value = format!("{secs}s");
            }
        }
    }
    metadata
}

/// A gRPC connection to the scaler on behalf of one ScaledObject.
#[derive(Debug, Clone)]
pub struct ScalerLink {
    client: ExternalScalerClient<Channel>,
    name: String,
    namespace: String,
    timeout: Duration,
    /// The last target GetMetricSpec gave per trigger: KEDA writes it into the HPA's metric spec once, so
    /// it is still known (for fallback) while the scaler fails.
    known_targets: Arc<Mutex<HashMap<String, f64>>>,
}

/// Normalise `host:port` or `http://host:port` into a URI tonic accepts.
pub fn grpc_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl ScalerLink {
    /// Connect lazily (the first call dials), so a scaler that is briefly down is a per-poll error, as for KEDA.
    pub fn new(addr: &str, qualified_name: &str, timeout: Duration) -> Result<ScalerLink, String> {
        let endpoint = Channel::from_shared(grpc_uri(addr))
            .map_err(|e| format!("scaler address {addr:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let (namespace, name) = qualified_name
            .split_once('/')
            .unwrap_or(("default", qualified_name));
        Ok(ScalerLink {
            client: ExternalScalerClient::new(endpoint.connect_lazy()),
            name: name.to_string(),
            namespace: namespace.to_string(),
            timeout,
            known_targets: Arc::default(),
        })
    }

    fn object_ref(&self, metadata: &HashMap<String, String>) -> ScaledObjectRef {
        ScaledObjectRef {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            scaler_metadata: metadata.clone(),
        }
    }

    /// One KEDA poll of one trigger. `pushed_active` is the latest StreamIsActive answer for push triggers.
    pub async fn observe(
        &self,
        trigger: &TriggerConfig,
        metadata: &HashMap<String, String>,
        pushed_active: Option<bool>,
    ) -> Observation {
        let result =
            tokio::time::timeout(self.timeout * 3, self.ask(metadata, pushed_active)).await;
        let known = || {
            let cached = self
                .known_targets
                .lock()
                .expect("targets lock")
                .get(&trigger.name)
                .copied();
            // Before the first successful GetMetricSpec, the target written in the ScaledObject.
            cached
                .or_else(|| trigger.metadata.get("target").and_then(|t| t.parse().ok()))
                .unwrap_or(0.0)
        };
        let (target, reading) = match result {
            Ok(Ok((target, value, active))) => {
                self.known_targets
                    .lock()
                    .expect("targets lock")
                    .insert(trigger.name.clone(), target);
                (target, Ok(Reading { value, active }))
            }
            Ok(Err(e)) => (known(), Err(e)),
            Err(_) => (
                known(),
                Err(format!(
                    "scaler did not answer within {:?}",
                    self.timeout * 3
                )),
            ),
        };
        Observation {
            trigger: trigger.name.clone(),
            metric_type: trigger.metric_type,
            target,
            reading,
        }
    }

    async fn ask(
        &self,
        metadata: &HashMap<String, String>,
        pushed_active: Option<bool>,
    ) -> Result<(f64, f64, bool), String> {
        let mut client = self.client.clone();
        let object = self.object_ref(metadata);
        let spec = client
            .get_metric_spec(object.clone())
            .await
            .map_err(|s| format!("GetMetricSpec: {}", s.message()))?
            .into_inner();
        let metric = spec
            .metric_specs
            .first()
            .ok_or_else(|| "GetMetricSpec returned no metric".to_string())?;
        let target = if metric.target_size_float != 0.0 {
            metric.target_size_float
        } else {
            metric.target_size as f64
        };
        let values = client
            .get_metrics(GetMetricsRequest {
                scaled_object_ref: Some(object.clone()),
                metric_name: metric.metric_name.clone(),
            })
            .await
            .map_err(|s| format!("GetMetrics: {}", s.message()))?
            .into_inner();
        let value = values
            .metric_values
            .iter()
            .find(|v| v.metric_name == metric.metric_name)
            .or(values.metric_values.first())
            .map(|v| {
                if v.metric_value_float != 0.0 {
                    v.metric_value_float
                } else {
                    v.metric_value as f64
                }
            })
            .ok_or_else(|| "GetMetrics returned no value".to_string())?;
        let active = match pushed_active {
            Some(active) => active,
            None => {
                client
                    .is_active(object)
                    .await
                    .map_err(|s| format!("IsActive: {}", s.message()))?
                    .into_inner()
                    .result
            }
        };
        Ok((target, value, active))
    }

    /// Hold a StreamIsActive open for an `external-push` trigger, as KEDA does, re-opening it when the
    /// trigger's metadata changes (replicas came or went) or the stream breaks. Each answer is stored in
    /// `latest`; a change wakes the control loop through `wake` (KEDA reacts to pushes at once).
    pub async fn watch_push(
        self,
        metadata: Arc<Mutex<HashMap<String, String>>>,
        latest: Arc<Mutex<Option<bool>>>,
        wake: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(200);
        while !stop.is_cancelled() {
            let opened = metadata.lock().expect("metadata lock").clone();
            let mut client = self.client.clone();
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = client.stream_is_active(self.object_ref(&opened)) => s,
            };
            let mut stream = match stream {
                Ok(s) => {
                    backoff = Duration::from_millis(200);
                    s.into_inner()
                }
                Err(_) => {
                    *latest.lock().expect("push lock") = None;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {
                        if *metadata.lock().expect("metadata lock") != opened {
                            break; // re-open with the new metadata
                        }
                        continue;
                    }
                    m = stream.message() => m,
                };
                match message {
                    Ok(Some(answer)) => {
                        let previous = latest.lock().expect("push lock").replace(answer.result);
                        if previous != Some(answer.result) {
                            wake.notify_one();
                        }
                    }
                    Ok(None) | Err(_) => {
                        *latest.lock().expect("push lock") = None;
                        break;
                    }
                }
            }
        }
    }
}

/// Is this trigger one the lab can serve? (Only the external scaler protocol runs without a cluster.)
pub fn check_trigger(trigger: &TriggerConfig) -> Result<(), String> {
    match trigger.kind.as_str() {
        "external" | "external-push" => {}
        other => {
            return Err(format!(
                "trigger {:?} has type {other:?}; the lab speaks only KEDA's external scaler protocol \
                 (types `external` and `external-push`)",
                trigger.name
            ));
        }
    }
    if !trigger.metadata.contains_key("scalerAddress") {
        return Err(format!(
            "trigger {:?} has no metadata.scalerAddress",
            trigger.name
        ));
    }
    if trigger.metric_type == MetricType::Utilization {
        return Err(format!(
            "trigger {:?}: Utilization needs resource metrics",
            trigger.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(metadata: &[(&str, &str)]) -> TriggerConfig {
        TriggerConfig {
            kind: "external-push".into(),
            name: "backlog".into(),
            metric_type: MetricType::AverageValue,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn metadata_is_rewritten_for_local_runs() {
        let t = trigger(&[
            ("scalerAddress", "scaler.autoscaling-lab.svc:6000"),
            ("targets", "consumer-headless:8080"),
            ("window", "1m"),
            ("target", "3"),
        ]);
        let urls = vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".to_string(),
        ];
        let m = local_metadata(&t, "127.0.0.1:9", Some(&urls), 0.25);
        assert_eq!(m["scalerAddress"], "127.0.0.1:9");
        assert_eq!(m["targets"], "http://127.0.0.1:1,http://127.0.0.1:2");
        assert_eq!(m["window"], "15s");
        assert_eq!(m["target"], "3");
        // Durations never go below the scaler's 1 s minimum; unscaled runs keep the text as written.
        assert_eq!(local_metadata(&t, "a:1", None, 0.001)["window"], "1s");
        assert_eq!(local_metadata(&t, "a:1", None, 1.0)["window"], "1m");
        assert_eq!(
            local_metadata(&t, "a:1", None, 1.0)["targets"],
            "consumer-headless:8080"
        );
    }

    #[test]
    fn only_external_triggers_run_in_the_lab() {
        assert!(check_trigger(&trigger(&[("scalerAddress", "x:1")])).is_ok());
        assert!(
            check_trigger(&trigger(&[]))
                .unwrap_err()
                .contains("scalerAddress")
        );
        let mut cpu = trigger(&[("scalerAddress", "x:1")]);
        cpu.kind = "cpu".into();
        assert!(check_trigger(&cpu).unwrap_err().contains("external"));
    }
}
