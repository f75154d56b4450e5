//! Cross-check of the Kubernetes manifests against the scaler's own parser: every trigger of the lab's ScaledObject
//! (`manifests/components/keda/scaledobject.yaml`) must be accepted by `TriggerSpec::from_metadata` exactly as KEDA
//! sends it (KEDA passes the trigger's whole `metadata` map, `scalerAddress` included, in `scalerMetadata`).

use std::collections::{HashMap, HashSet};

use scaler::trigger::{DirectTargets, MetricType, SourceSpec, TriggerSpec};
use serde_norway::Value;

const SCALED_OBJECT: &str = "manifests/components/keda/scaledobject.yaml";

struct ManifestTrigger {
    name: String,
    kind: String,
    metric_type: String,
    metadata: HashMap<String, String>,
}

fn manifest_triggers() -> Vec<ManifestTrigger> {
    let path = testkit::workspace_root().join(SCALED_OBJECT);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let doc: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{SCALED_OBJECT} is not YAML: {e}"));
    assert_eq!(doc["kind"].as_str(), Some("ScaledObject"));
    let triggers = doc["spec"]["triggers"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{SCALED_OBJECT} has no spec.triggers list"));
    assert!(!triggers.is_empty());
    triggers
        .iter()
        .map(|t| {
            let name = t["name"]
                .as_str()
                .expect("every trigger is named")
                .to_string();
            let kind = t["type"].as_str().expect("trigger type").to_string();
            // KEDA's default metricType is AverageValue.
            let metric_type = t["metricType"]
                .as_str()
                .unwrap_or("AverageValue")
                .to_string();
            let metadata = t["metadata"]
                .as_mapping()
                .unwrap_or_else(|| panic!("trigger {name} has no metadata"))
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().expect("metadata keys are strings").to_string();
                    // KEDA's CRD types metadata as map[string]string: an unquoted number would be refused by the API server.
                    let value = v
                        .as_str()
                        .unwrap_or_else(|| {
                            panic!(
                                "trigger {name}: metadata.{key} must be a quoted string, got {v:?}"
                            )
                        })
                        .to_string();
                    (key, value)
                })
                .collect();
            ManifestTrigger {
                name,
                kind,
                metric_type,
                metadata,
            }
        })
        .collect()
}

#[test]
fn every_trigger_of_the_scaledobject_parses_as_keda_sends_it() {
    for trigger in manifest_triggers() {
        assert!(
            trigger.kind == "external-push" || trigger.kind == "external",
            "trigger {} has type {}; the lab's scaler is an external scaler",
            trigger.name,
            trigger.kind
        );
        let spec = TriggerSpec::from_metadata(&trigger.metadata).unwrap_or_else(|e| {
            panic!(
                "the scaler refuses trigger {} of {SCALED_OBJECT} (metadata {:?}): {e}",
                trigger.name, trigger.metadata
            )
        });
        assert_eq!(
            spec.kind.name(),
            trigger.metadata["trigger"],
            "trigger {}",
            trigger.name
        );
        assert_eq!(
            spec.metric_type.to_string(),
            trigger.metric_type,
            "trigger {}: the scaler's metric type must match the ScaledObject's metricType, or KEDA and the scaler \
             disagree on whether the value is divided by the replica count",
            trigger.name
        );
        match &spec.source {
            SourceSpec::Direct {
                targets: DirectTargets::Dns { host, port },
            } => {
                assert_eq!(host, "consumer-headless.autoscaling-lab.svc.cluster.local");
                assert_eq!(*port, 8080);
            }
            other => panic!(
                "trigger {} should read the consumer pods through the headless Service, got {other:?}",
                trigger.name
            ),
        }
        assert!(spec.target > 0.0);
        assert!(
            spec.activation_target < spec.target,
            "trigger {}: activation ({}) at or above the target ({}) would never activate before scaling is needed",
            trigger.name,
            spec.activation_target,
            spec.target
        );
    }
}

#[test]
fn the_scaledobject_uses_the_four_lab_triggers_with_distinct_metric_names() {
    let triggers = manifest_triggers();
    let kinds: HashSet<String> = triggers
        .iter()
        .map(|t| t.metadata["trigger"].clone())
        .collect();
    let expected: HashSet<String> = ["request_rate", "latency", "allocator_pressure", "backlog"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(kinds, expected);
    // KEDA names each HPA metric after the trigger's metricName; duplicates would collide in the HPA.
    let names: Vec<String> = triggers
        .iter()
        .filter_map(|t| {
            TriggerSpec::from_metadata(&t.metadata)
                .ok()
                .map(|s| s.metric_name)
        })
        .collect();
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(
        names.len(),
        triggers.len(),
        "every trigger parses (see the test above)"
    );
    assert_eq!(unique.len(), names.len(), "metric names collide: {names:?}");
    let latency = triggers
        .iter()
        .find(|t| t.metadata["trigger"] == "latency")
        .unwrap();
    assert_eq!(latency.metric_type, "Value");
    assert!(matches!(
        TriggerSpec::from_metadata(&latency.metadata).map(|s| s.metric_type),
        Ok(MetricType::Value)
    ));
}

#[test]
fn a_broken_trigger_is_refused() {
    // The check above can fail: a misspelt key and a non-numeric target are errors, not silently ignored.
    let mut trigger = manifest_triggers().remove(0);
    trigger.metadata.insert("targte".into(), "3".into());
    assert!(TriggerSpec::from_metadata(&trigger.metadata).is_err());
    let mut trigger = manifest_triggers().remove(0);
    trigger.metadata.insert("target".into(), "three".into());
    assert!(TriggerSpec::from_metadata(&trigger.metadata).is_err());
}
