//! The Kubernetes reads behind the scaling analysis, on top of the replica counts: the HPA's `lastScaleTime` and
//! spec.behavior, the ScaledObject's spec (the settings that govern each phase), the scaled pods' Ready transitions
//! (named as the consumer answers in `x-served-by`) and the HPA's `SuccessfulRescale` Events. All reads are `get` or
//! `list`; an input the service account may not read is noted as missing and the run goes on without it.

use std::collections::HashSet;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::record::{
    PodLife, RecordedDecision, ScalingRecord, parse_rescale_message, parse_window,
};

fn unix(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

/// The settings a ScaledObject spec sets, with KEDA's and the HPA's defaults for what it leaves out.
pub fn settings_from_scaled_object(spec: &Value) -> timeline::Settings {
    let num = |p: &str| spec.pointer(p).and_then(Value::as_f64);
    let behavior = "/advanced/horizontalPodAutoscalerConfig/behavior";
    let mut s = timeline::Settings {
        polling_interval_s: Some(num("/pollingInterval").unwrap_or(30.0)),
        cooldown_s: Some(num("/cooldownPeriod").unwrap_or(300.0)),
        min_replicas: Some(num("/minReplicaCount").map_or(0, |v| v.max(0.0) as u32)),
        scale_up_stabilization_s: Some(
            num(&format!("{behavior}/scaleUp/stabilizationWindowSeconds")).unwrap_or(0.0),
        ),
        scale_down_stabilization_s: Some(
            num(&format!("{behavior}/scaleDown/stabilizationWindowSeconds")).unwrap_or(300.0),
        ),
        ..timeline::Settings::default()
    };
    s.scale_up_policy_periods_s = spec
        .pointer(&format!("{behavior}/scaleUp/policies"))
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("periodSeconds").and_then(Value::as_f64))
                .collect()
        })
        // The HPA's default scale-up policies both use a 15 s period.
        .unwrap_or_else(|| vec![15.0]);
    for (i, t) in spec
        .get("triggers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("trigger-{i}"), str::to_string);
        if let Some(w) = t
            .pointer("/metadata/window")
            .and_then(Value::as_str)
            .and_then(parse_window)
        {
            s.trigger_windows.insert(name, w);
        }
    }
    s
}

/// The settings a plain HPA's spec sets (behavior, minReplicas), with the HPA's defaults.
pub fn settings_from_hpa(hpa: &HorizontalPodAutoscaler) -> timeline::Settings {
    let spec = &hpa.spec;
    let behavior: Option<&HorizontalPodAutoscalerBehavior> = spec.behavior.as_ref();
    let up = behavior.and_then(|b| b.scale_up.as_ref());
    let down = behavior.and_then(|b| b.scale_down.as_ref());
    timeline::Settings {
        scale_up_stabilization_s: Some(
            up.and_then(|u| u.stabilization_window_seconds)
                .map_or(0.0, f64::from),
        ),
        scale_up_policy_periods_s: up
            .and_then(|u| u.policies.as_ref())
            .map(|ps| ps.iter().map(|p| f64::from(p.period_seconds)).collect())
            .unwrap_or_else(|| vec![15.0]),
        scale_down_stabilization_s: Some(
            down.and_then(|d| d.stabilization_window_seconds)
                .map_or(300.0, f64::from),
        ),
        min_replicas: Some(
            spec.min_replicas
                .map_or(1, |m| u32::try_from(m).unwrap_or(1)),
        ),
        ..timeline::Settings::default()
    }
}

/// One pod's life as the API shows it now.
pub fn pod_life(pod: &Pod) -> PodLife {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(unix);
    PodLife {
        created_unix: pod.metadata.creation_timestamp.as_ref().map(unix),
        ready_unix: ready,
        deleted_unix: pod.metadata.deletion_timestamp.as_ref().map(unix),
    }
}

/// The scale decisions in the HPA's Events not seen before (`seen` holds each event's uid and count, since the API
/// folds repeats of one message into one Event with a growing count).
pub fn rescale_decisions(
    events: &[Event],
    hpa: &str,
    seen: &mut HashSet<String>,
) -> Vec<RecordedDecision> {
    let mut out = Vec::new();
    for e in events {
        if e.reason.as_deref() != Some("SuccessfulRescale")
            || e.involved_object.name.as_deref() != Some(hpa)
        {
            continue;
        }
        let key = format!(
            "{}/{}/{}",
            e.metadata.uid.as_deref().unwrap_or(""),
            e.metadata.name.as_deref().unwrap_or(""),
            e.count.unwrap_or(1)
        );
        let at = e
            .last_timestamp
            .as_ref()
            .map(unix)
            .or_else(|| {
                e.event_time
                    .as_ref()
                    .map(|t| t.0.as_microsecond() as f64 / 1e6)
            })
            .or_else(|| e.first_timestamp.as_ref().map(unix));
        let (Some(at_unix), Some((to, reason))) =
            (at, e.message.as_deref().and_then(parse_rescale_message))
        else {
            continue;
        };
        if seen.insert(key) {
            out.push(RecordedDecision {
                at_unix,
                to,
                reason,
            });
        }
    }
    out
}

fn denied(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
}

/// Read pods and Events into `record`; each failure becomes a missing input.
pub async fn read_history(
    client: &kube::Client,
    namespace: &str,
    selector: Option<String>,
    hpa: Option<&str>,
    record: &std::sync::Mutex<ScalingRecord>,
    seen: &std::sync::Mutex<HashSet<String>>,
) {
    let pods_result = match selector {
        Some(sel) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            match pods.list(&ListParams::default().labels(&sel)).await {
                Ok(list) => {
                    let mut r = record.lock().expect("record lock");
                    for p in &list.items {
                        if let Some(name) = &p.metadata.name {
                            let life = pod_life(p);
                            let entry = r.pods.entry(name.clone()).or_default();
                            // The first Ready transition is the one that counts; a later flap keeps it.
                            entry.created_unix = entry.created_unix.or(life.created_unix);
                            entry.ready_unix = entry.ready_unix.or(life.ready_unix);
                            entry.deleted_unix = entry.deleted_unix.or(life.deleted_unix);
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(format!("pods list: {}", denied(&e))),
            }
        }
        None => Err("the Deployment has no matchLabels selector".into()),
    };
    record
        .lock()
        .expect("record lock")
        .note("pods", pods_result);
    let Some(hpa) = hpa else { return };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={hpa}"
    ));
    let result = match events.list(&params).await {
        Ok(list) => {
            let fresh = rescale_decisions(&list.items, hpa, &mut seen.lock().expect("seen lock"));
            record.lock().expect("record lock").decisions.extend(fresh);
            Ok(())
        }
        Err(e) => Err(format!("events list: {}", denied(&e))),
    };
    record.lock().expect("record lock").note("events", result);
}
