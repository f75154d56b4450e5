//! A stand-in Kubernetes API for the cluster-fault tests, on 127.0.0.1:0. No API server of any kind can run on these
//! machines (docs: /work/shared/MACHINE-NOTES.md), so the Kubernetes API is the one thing these tests stand in for;
//! the load, the consumer and the generator are real.
//!
//! It keeps a small cluster — nodes, pods (nodeName, Ready condition, ownerReferences, a DaemonSet pod, a mirror pod,
//! a pod of another namespace), the consumer and scaler Deployments with a scale subresource, PodDisruptionBudgets,
//! NetworkPolicies — and answers as the real API does: an eviction that a budget forbids is a 429 with the API's
//! Status body; a deleted or evicted consumer pod is replaced by a new one that turns Ready after a delay, as its
//! ReplicaSet would. It ENFORCES RBAC from the real manifests (manifests/components/load-generator: the monitor
//! Role, the chaos Role, and node-chaos/'s ClusterRole), bound to the load-generator ServiceAccount, so a test passing here proves
//! those rules suffice; a refused call is a 403 whose Status message names the verb and resource like the real one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The namespace of the Roles in the manifests: the consumer's.
pub const NS: &str = "autoscaling-lab";
const USER: &str = "system:serviceaccount:autoscaling-lab:load-generator";

/// One RBAC rule: (apiGroups, resources, verbs, resourceNames), from a Role (namespaced) or ClusterRole.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub source: String,
    pub namespace: Option<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub names: Vec<String>,
}

/// The RBAC files of the load-generator component: the monitor Role, the namespaced chaos Role, and the opt-in
/// node-chaos component's ClusterRole.
pub const MONITOR_ROLE: &str = "role.yaml";
pub const CHAOS_ROLE: &str = "chaos-role.yaml";
pub const NODE_CHAOS_ROLE: &str = "node-chaos/clusterrole.yaml";

/// The rules of the load-generator ServiceAccount with every RBAC file bound (the development overlay).
pub fn manifest_rules() -> Vec<Rule> {
    rules_of(&[MONITOR_ROLE, CHAOS_ROLE, NODE_CHAOS_ROLE])
}

/// The rules of `files` (under manifests/components/load-generator).
pub fn rules_of(files: &[&str]) -> Vec<Rule> {
    let dir = testkit::workspace_root().join("manifests/components/load-generator");
    files
        .iter()
        .flat_map(|file| read_rules(&dir.join(file)))
        .collect()
}

fn read_rules(path: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(path).expect("RBAC manifest");
    let doc: Value = serde_norway::from_str(&text).expect("RBAC YAML");
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    doc["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| Rule {
            source: format!("{kind}/{name}"),
            namespace: (kind == "Role").then(|| {
                doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }),
            groups: list(&r["apiGroups"]),
            resources: list(&r["resources"]),
            verbs: list(&r["verbs"]),
            names: list(&r["resourceNames"]),
        })
        .collect()
}

/// `rules` with one verb of one rule taken away (`source`, resource, verb).
pub fn rules_without(mut rules: Vec<Rule>, source: &str, resource: &str, verb: &str) -> Vec<Rule> {
    let mut found = false;
    for r in &mut rules {
        if r.source == source && r.resources.iter().any(|x| x == resource) {
            let before = r.verbs.len();
            r.verbs.retain(|v| v != verb);
            found |= r.verbs.len() < before;
        }
    }
    assert!(found, "{source} grants no {verb} on {resource}");
    rules
}

/// One pod of the stand-in.
fn pod(
    ns: &str,
    name: &str,
    node: &str,
    labels: Value,
    owner: Option<(&str, &str)>,
    ready: bool,
) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "creationTimestamp": "2026-01-01T00:00:00Z", "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "x"}]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    });
    if let Some((kind, owner)) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner,
            "uid": format!("uid-{owner}"), "controller": true}]);
    }
    p
}

/// The cluster's state.
#[derive(Debug)]
pub struct World {
    pub rules: Vec<Rule>,
    pub pods: BTreeMap<(String, String), Value>,
    pub nodes: BTreeMap<String, Value>,
    /// (namespace, name) -> (matchLabels, minAvailable).
    pub pdbs: BTreeMap<(String, String), (BTreeMap<String, String>, usize)>,
    pub network_policies: BTreeMap<(String, String), Value>,
    pub scales: BTreeMap<String, i64>,
    /// Every call: `VERB resource name -> code`.
    pub calls: Vec<String>,
    /// Replacement pods and when they turn Ready.
    pending: Vec<((String, String), Instant)>,
    pub ready_delay: Duration,
    next: u32,
}

impl World {
    /// Three nodes; consumer pods c1 (n1, the oldest), c2 (n2), c3 (n3); on n1 also a DaemonSet pod, a mirror pod
    /// and kube-system's coredns; the scaler at 2 replicas.
    pub fn new(rules: Vec<Rule>) -> World {
        let consumer = json!({"app": "consumer"});
        let mut pods = BTreeMap::new();
        let mut add = |p: Value| {
            let key = (
                p["metadata"]["namespace"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
            );
            pods.insert(key, p);
        };
        let mut c1 = pod(
            NS,
            "consumer-c1",
            "n1",
            consumer.clone(),
            Some(("ReplicaSet", "consumer-rs")),
            true,
        );
        c1["metadata"]["creationTimestamp"] = json!("2025-12-31T00:00:00Z");
        add(c1);
        add(pod(
            NS,
            "consumer-c2",
            "n2",
            consumer.clone(),
            Some(("ReplicaSet", "consumer-rs")),
            true,
        ));
        add(pod(
            NS,
            "consumer-c3",
            "n3",
            consumer,
            Some(("ReplicaSet", "consumer-rs")),
            true,
        ));
        add(pod(
            "kube-system",
            "kube-proxy-n1",
            "n1",
            json!({"k8s-app": "kube-proxy"}),
            Some(("DaemonSet", "kube-proxy")),
            true,
        ));
        let mut mirror = pod(
            "kube-system",
            "etcd-n1",
            "n1",
            json!({"component": "etcd"}),
            None,
            true,
        );
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        add(mirror);
        add(pod(
            "kube-system",
            "coredns-1",
            "n1",
            json!({"k8s-app": "kube-dns"}),
            Some(("ReplicaSet", "coredns")),
            true,
        ));
        let nodes = ["n1", "n2", "n3"]
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n},
                    "spec": {}, "status": {}}),
                )
            })
            .collect();
        World {
            rules,
            pods,
            nodes,
            pdbs: BTreeMap::new(),
            network_policies: BTreeMap::new(),
            scales: BTreeMap::from([("scaler".to_string(), 2), ("consumer".to_string(), 3)]),
            calls: Vec::new(),
            pending: Vec::new(),
            ready_delay: Duration::from_millis(150),
            next: 0,
        }
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&Value> {
        self.pods.get(&(ns.to_string(), name.to_string()))
    }

    pub fn cordoned(&self, node: &str) -> bool {
        self.nodes[node]["spec"]["unschedulable"].as_bool() == Some(true)
    }

    /// Calls whose text starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.calls.iter().filter(|c| c.starts_with(prefix)).count()
    }

    fn allowed(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        self.rules.iter().any(|r| {
            r.namespace.as_deref().is_none_or(|rns| Some(rns) == ns)
                && r.groups.iter().any(|g| g == group)
                && r.resources.iter().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
                && (r.names.is_empty() || name.is_some_and(|n| r.names.iter().any(|x| x == n)))
        })
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        self.pending.retain(|(_, t)| *t > now);
        for key in due {
            if let Some(p) = self.pods.get_mut(&key) {
                p["status"]["conditions"][0]["status"] = json!("True");
            }
        }
    }

    /// A consumer pod went: its ReplicaSet makes a new one on a schedulable node, Ready after `ready_delay`.
    fn replace(&mut self, gone: &Value) {
        if gone["metadata"]["labels"]["app"] != "consumer" {
            return;
        }
        self.next += 1;
        let node = ["n3", "n2", "n1"]
            .into_iter()
            .find(|n| !self.cordoned(n))
            .unwrap_or("n3");
        let name = format!("consumer-r{}", self.next);
        let mut p = pod(
            NS,
            &name,
            node,
            json!({"app": "consumer"}),
            Some(("ReplicaSet", "consumer-rs")),
            false,
        );
        p["metadata"]["creationTimestamp"] = json!("2026-06-01T00:00:00Z");
        self.pods.insert((NS.into(), name.clone()), p);
        self.pending
            .push(((NS.into(), name), Instant::now() + self.ready_delay));
    }

    /// The budget check of an eviction: None when allowed, else the budget's message.
    fn budget_refuses(&self, victim: &Value) -> Option<String> {
        let ns = victim["metadata"]["namespace"].as_str()?;
        for ((pns, name), (selector, min)) in &self.pdbs {
            let selects = |p: &Value| {
                selector
                    .iter()
                    .all(|(k, v)| p["metadata"]["labels"][k] == json!(v))
            };
            if pns != ns || !selects(victim) {
                continue;
            }
            let healthy = self
                .pods
                .values()
                .filter(|p| p["metadata"]["namespace"] == json!(ns) && selects(p))
                .filter(|p| p["status"]["conditions"][0]["status"] == "True")
                .count();
            if healthy <= *min {
                return Some(format!(
                    "The disruption budget {name} needs {min} healthy pods and has {healthy} currently"
                ));
            }
        }
        None
    }
}

fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Response {
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        json!({"name": name, "kind": resource}),
    )
}

fn query(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Merge a JSON merge patch (RFC 7386) into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(map) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in map {
                if v.is_null() {
                    target.as_object_mut().unwrap().remove(k);
                } else {
                    merge(
                        target
                            .as_object_mut()
                            .unwrap()
                            .entry(k.clone())
                            .or_insert(Value::Null),
                        v,
                    );
                }
            }
        }
        other => *target = other.clone(),
    }
}

type Shared = Arc<Mutex<World>>;

/// Serve `world` on 127.0.0.1:0; returns the base URL.
pub async fn serve(world: Shared) -> String {
    let app = Router::new().fallback(handle).with_state(world);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn handle(State(world): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let mut w = world.lock().expect("world");
    w.tick();
    let response = route(&mut w, &method, &uri, &body);
    let line = format!("{method} {} -> {}", uri.path(), response.status().as_u16());
    w.calls.push(line);
    response
}

fn route(w: &mut World, method: &Method, uri: &Uri, body: &[u8]) -> Response {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // (group, namespace, resource incl. subresource, name)
    let (group, ns, resource, name): (&str, Option<&str>, String, Option<&str>) = match parts
        .as_slice()
    {
        ["api", "v1", "pods"] => ("", None, "pods".into(), None),
        ["api", "v1", "nodes", n] => ("", None, "nodes".into(), Some(n)),
        ["api", "v1", "namespaces", ns, r] => ("", Some(ns), (*r).into(), None),
        ["api", "v1", "namespaces", ns, r, n] => ("", Some(ns), (*r).into(), Some(n)),
        ["api", "v1", "namespaces", ns, r, n, sub] => ("", Some(ns), format!("{r}/{sub}"), Some(n)),
        ["apis", g, _, "namespaces", ns, r] => (g, Some(ns), (*r).into(), None),
        ["apis", g, _, "namespaces", ns, r, n] => (g, Some(ns), (*r).into(), Some(n)),
        ["apis", g, _, "namespaces", ns, r, n, sub] => (g, Some(ns), format!("{r}/{sub}"), Some(n)),
        _ => return not_found("path", uri.path()),
    };
    let verb = match (method.as_str(), name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "no".into(),
                json!({}),
            );
        }
    };
    if !w.allowed(verb, group, &resource, ns, name) {
        let what = match name {
            Some(n) if verb != "create" => format!("{resource} \"{n}\""),
            _ => resource.clone(),
        };
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{what} is forbidden: User \"{USER}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            ),
            json!({"name": name.unwrap_or(""), "kind": resource}),
        );
    }
    let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let ns_s = ns.unwrap_or("").to_string();
    match (verb, resource.as_str()) {
        ("list", "pods") => {
            let labels = query(uri, "labelSelector").unwrap_or_default();
            let fields = query(uri, "fieldSelector").unwrap_or_default();
            let items: Vec<Value> = w
                .pods
                .values()
                .filter(|p| ns.is_none_or(|ns| p["metadata"]["namespace"] == json!(ns)))
                .filter(|p| {
                    labels.split(',').filter(|c| !c.is_empty()).all(|c| {
                        c.split_once('=')
                            .is_some_and(|(k, v)| p["metadata"]["labels"][k] == json!(v))
                    })
                })
                .filter(|p| {
                    fields
                        .strip_prefix("spec.nodeName=")
                        .is_none_or(|n| p["spec"]["nodeName"] == json!(n))
                })
                .cloned()
                .collect();
            axum::Json(
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                "items": items}),
            )
            .into_response()
        }
        ("get", "pods") => match w.pod(&ns_s, name.unwrap()) {
            Some(p) => axum::Json(p.clone()).into_response(),
            None => not_found("pods", name.unwrap()),
        },
        ("delete", "pods") => match w.pods.remove(&(ns_s, name.unwrap().to_string())) {
            Some(p) => {
                w.replace(&p);
                axum::Json(p).into_response()
            }
            None => not_found("pods", name.unwrap()),
        },
        ("patch", "pods") => match w.pods.get_mut(&(ns_s, name.unwrap().to_string())) {
            Some(p) => {
                merge(p, &patch);
                axum::Json(p.clone()).into_response()
            }
            None => not_found("pods", name.unwrap()),
        },
        ("create", "pods/eviction") => {
            let key = (ns_s, name.unwrap().to_string());
            if patch["apiVersion"] != "policy/v1" || patch["kind"] != "Eviction" {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "not a policy/v1 Eviction".into(),
                    json!({}),
                );
            }
            let Some(victim) = w.pods.get(&key).cloned() else {
                return not_found("pods", &key.1);
            };
            if let Some(why) = w.budget_refuses(&victim) {
                return status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    json!({"causes": [{"reason": "DisruptionBudget", "message": why}]}),
                );
            }
            w.pods.remove(&key);
            w.replace(&victim);
            (
                StatusCode::CREATED,
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 201})),
            )
                .into_response()
        }
        ("get", "nodes") | ("patch", "nodes") => match w.nodes.get_mut(name.unwrap()) {
            Some(n) => {
                if verb == "patch" {
                    merge(n, &patch);
                }
                axum::Json(n.clone()).into_response()
            }
            None => not_found("nodes", name.unwrap()),
        },
        ("create", "networkpolicies") => {
            let pname = patch["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = (ns_s.clone(), pname.clone());
            if w.network_policies.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("networkpolicies.networking.k8s.io \"{pname}\" already exists"),
                    json!({}),
                );
            }
            let mut np = patch.clone();
            np["metadata"]["namespace"] = json!(ns_s);
            w.network_policies.insert(key, np.clone());
            (StatusCode::CREATED, axum::Json(np)).into_response()
        }
        ("delete", "networkpolicies") => match w
            .network_policies
            .remove(&(ns_s, name.unwrap().to_string()))
        {
            Some(np) => axum::Json(np).into_response(),
            None => not_found("networkpolicies.networking.k8s.io", name.unwrap()),
        },
        ("get", "deployments") => {
            let n = name.unwrap();
            if !w.scales.contains_key(n) {
                return not_found("deployments.apps", n);
            }
            axum::Json(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": n, "namespace": ns_s},
                "spec": {"replicas": w.scales[n], "selector": {"matchLabels": {"app": n}},
                         "template": {"metadata": {"labels": {"app": n}}}}}))
            .into_response()
        }
        ("get", "deployments/scale") | ("patch", "deployments/scale") => {
            let n = name.unwrap().to_string();
            let Some(current) = w.scales.get(&n).copied() else {
                return not_found("deployments.apps", &n);
            };
            let replicas = if verb == "patch" {
                patch["spec"]["replicas"].as_i64().unwrap_or(current)
            } else {
                current
            };
            w.scales.insert(n.clone(), replicas);
            axum::Json(json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": n, "namespace": ns_s},
                "spec": {"replicas": replicas}, "status": {"replicas": replicas}}))
            .into_response()
        }
        // KEDA as the monitor reads it, scripted on the scaler's count: with no scaler pod the external trigger cannot
        // be read (Ready=False) and the fallback stands in (Fallback=True, its 5 replicas in the HPA). Real KEDA waits
        // for `failureThreshold` failed polls first; this stand-in skips that wait.
        ("get", "scaledobjects") if name == Some("consumer") => {
            let down = w.scales.get("scaler") == Some(&0);
            let (ready, fallback) = if down {
                ("False", "True")
            } else {
                ("True", "False")
            };
            axum::Json(json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": "consumer", "namespace": ns_s},
                "spec": {"scaleTargetRef": {"name": "consumer"}, "fallback": {"failureThreshold": 3, "replicas": 5}},
                "status": {"conditions": [{"type": "Ready", "status": ready},
                                          {"type": "Fallback", "status": fallback}]}}))
            .into_response()
        }
        ("get", "horizontalpodautoscalers") if name == Some("keda-hpa-consumer") => {
            let desired = if w.scales.get("scaler") == Some(&0) {
                5
            } else {
                w.scales["consumer"]
            };
            axum::Json(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "keda-hpa-consumer", "namespace": ns_s},
                "spec": {"maxReplicas": 10, "minReplicas": 1,
                         "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"}},
                "status": {"currentReplicas": desired, "desiredReplicas": desired}}))
            .into_response()
        }
        _ => not_found(&resource, name.unwrap_or("")),
    }
}
