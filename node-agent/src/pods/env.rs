//! A container's environment as the kubelet builds it: the Service variables (the `kubernetes` Service's always, the
//! namespace's unless `enableServiceLinks: false`), then `envFrom` in order, then `env` in order with `$(VAR)`
//! expanded from what came before, each `valueFrom` resolved (`fieldRef`, `resourceFieldRef`, `configMapKeyRef`,
//! `secretKeyRef`). The same expansion applies to `command` and `args`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use crate::quantity;

/// Why a container's environment could not be built: the container waits with `CreateContainerConfigError`.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    NoKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("env {var}: {why}")]
    Invalid { var: String, why: String },
    #[error("reading {kind} {namespace}/{name}: {why}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        why: String,
    },
}

/// The ConfigMaps and Secrets a pod refers to, fetched once per container start.
#[allow(async_fn_in_trait)]
pub trait Objects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
}

/// What the environment is built from besides the container spec.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// Services of the pod's namespace, and the `kubernetes` Service of `default`.
    pub services: &'a [Service],
    /// The node's allocatable CPU (cores) and memory (bytes): what `resourceFieldRef` gives without a limit.
    pub node_cpu: f64,
    pub node_memory: u64,
}

/// The Service variables for a pod in `namespace`.
pub fn service_variables(
    services: &[Service],
    namespace: &str,
    links: bool,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for svc in services {
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let master = svc_ns == "default" && name == "kubernetes";
        let ours = svc_ns == namespace && links;
        if !(master || ours) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = name.to_uppercase().replace('-', "_");
        vars.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        vars.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        vars.insert(
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        );
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                vars.insert(
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    port.port.to_string(),
                );
            }
            let p = proto(port);
            let base = format!("{prefix}_PORT_{}_{}", port.port, p.to_uppercase());
            vars.insert(
                base.clone(),
                format!("{}://{ip}:{}", p.to_lowercase(), port.port),
            );
            vars.insert(format!("{base}_PROTO"), p.to_lowercase());
            vars.insert(format!("{base}_PORT"), port.port.to_string());
            vars.insert(format!("{base}_ADDR"), ip.to_string());
        }
    }
    vars
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` is NAME's value when it is defined, `$$` is `$`, anything else stays.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let c = input[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The value of a `fieldRef` path.
pub fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(String::from)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!(
                    "fieldRef {path:?} is not supported (metadata.name, .namespace, .uid, .labels['k'], .annotations['k'], spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s))"
                ));
            }
        }
    })
}

/// The value of a `resourceFieldRef` for `container` (its limit, else the node's allocatable; divided, rounded up).
pub fn resource(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    inputs: &Inputs<'_>,
) -> Result<String, String> {
    let resources = container.resources.as_ref();
    let get = |kind: &str, key: &str| -> Option<String> {
        let list = match kind {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        list.and_then(|l| l.get(key)).map(|q| q.0.clone())
    };
    let (kind, key) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef {resource:?} is not limits.X or requests.X"))?;
    let value = match (kind, key) {
        ("limits" | "requests", "cpu") => get(kind, "cpu")
            .or_else(|| {
                if kind == "requests" {
                    get("limits", "cpu")
                } else {
                    None
                }
            })
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(if kind == "limits" {
                inputs.node_cpu
            } else {
                0.0
            }),
        ("limits" | "requests", "memory" | "ephemeral-storage") => get(kind, key)
            .or_else(|| {
                if kind == "requests" {
                    get("limits", key)
                } else {
                    None
                }
            })
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(if kind == "limits" {
                inputs.node_memory as f64
            } else {
                0.0
            }),
        _ => return Err(format!("resourceFieldRef {resource:?} is not supported")),
    };
    let divisor = match divisor {
        Some(d) => quantity::parse(d)
            .filter(|d| *d > 0.0)
            .ok_or_else(|| format!("divisor {d:?} is not a positive quantity"))?,
        None => 1.0,
    };
    Ok(((value / divisor) - 1e-9)
        .ceil()
        .max(if key == "cpu" { 1.0 } else { 0.0 })
        .to_string())
}

fn data_of_config_map(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut data = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    data
}

fn data_of_secret(secret: &Secret) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    data.extend(secret.string_data.clone().unwrap_or_default());
    data
}

/// A ConfigMap's or Secret's data, `None` when it is missing and optional.
async fn source_data(
    objects: &impl Objects,
    kind: &'static str,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, String>>, EnvError> {
    let api = |why| EnvError::Api {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        why,
    };
    let data = if kind == "configmap" {
        objects
            .config_map(namespace, name)
            .await
            .map_err(api)?
            .map(|c| data_of_config_map(&c))
    } else {
        objects
            .secret(namespace, name)
            .await
            .map_err(api)?
            .map(|s| data_of_secret(&s))
    };
    match data {
        Some(d) => Ok(Some(d)),
        None if optional => Ok(None),
        None => Err(EnvError::NotFound {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
    }
}

/// The container's environment, in the order a process sees it (Service variables, envFrom, env).
pub async fn build(
    container: &Container,
    inputs: &Inputs<'_>,
    objects: &impl Objects,
) -> Result<Vec<(String, String)>, EnvError> {
    let pod = inputs.pod;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let set =
        |order: &mut Vec<String>, values: &mut BTreeMap<String, String>, k: String, v: String| {
            if values.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        };
    for (k, v) in service_variables(inputs.services, namespace, links) {
        set(&mut order, &mut values, k, v);
    }
    for from in container.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(cm) = &from.config_map_ref {
            ("configmap", cm.name.clone(), cm.optional.unwrap_or(false))
        } else if let Some(s) = &from.secret_ref {
            ("secret", s.name.clone(), s.optional.unwrap_or(false))
        } else {
            continue;
        };
        if let Some(data) = source_data(objects, kind, namespace, &name, optional).await? {
            for (k, v) in data {
                // The kubelet skips keys that are not valid variable names (and says so in an event).
                if is_env_name(&format!("{prefix}{k}")) {
                    set(&mut order, &mut values, format!("{prefix}{k}"), v);
                }
            }
        }
    }
    for var in container.env.as_deref().unwrap_or_default() {
        let value = match &var.value_from {
            None => {
                let lookup = |name: &str| values.get(name).cloned();
                expand(var.value.as_deref().unwrap_or(""), &lookup)
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field(pod, &f.field_path, inputs.pod_ip, inputs.host_ip).map_err(|why| {
                        EnvError::Invalid {
                            var: var.name.clone(),
                            why,
                        }
                    })?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|c| !c.is_empty()) {
                        Some(other) => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|c| c.name == other))
                            .ok_or_else(|| EnvError::Invalid {
                                var: var.name.clone(),
                                why: format!("resourceFieldRef names container {other:?}, which the pod does not have"),
                            })?,
                        None => container,
                    };
                    resource(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        inputs,
                    )
                    .map_err(|why| EnvError::Invalid {
                        var: var.name.clone(),
                        why,
                    })?
                } else if let Some(k) = &from.config_map_key_ref {
                    match key_of(
                        objects,
                        "configmap",
                        namespace,
                        &k.name,
                        &k.key,
                        k.optional.unwrap_or(false),
                    )
                    .await?
                    {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    match key_of(
                        objects,
                        "secret",
                        namespace,
                        &k.name,
                        &k.key,
                        k.optional.unwrap_or(false),
                    )
                    .await?
                    {
                        Some(v) => v,
                        None => continue,
                    }
                } else {
                    return Err(EnvError::Invalid {
                        var: var.name.clone(),
                        why: "valueFrom names no source this node agent supports".into(),
                    });
                }
            }
        };
        set(&mut order, &mut values, var.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = values.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

async fn key_of(
    objects: &impl Objects,
    kind: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, EnvError> {
    match source_data(objects, kind, namespace, name, optional).await? {
        None => Ok(None),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(EnvError::NoKey {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                key: key.to_string(),
            }),
        },
    }
}

/// A C identifier-like variable name (the kubelet accepts any printable ASCII but `=`; common tools want this).
fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && name.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let lookup = |n: &str| (n == "POD").then(|| "p-1".to_string());
        assert_eq!(
            expand("k8s.pod.name=$(POD),x", &lookup),
            "k8s.pod.name=p-1,x"
        );
        assert_eq!(
            expand("$(MISSING) $$(POD) $$ $x", &lookup),
            "$(MISSING) $(POD) $ $x"
        );
        assert_eq!(expand("unterminated $(POD", &lookup), "unterminated $(POD");
    }

    fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some(n.to_string()),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn service_links_are_the_namespace_and_the_master_service() {
        let services = vec![
            service("default", "kubernetes", "10.96.0.1", &[("https", 443)]),
            service("lab", "consumer", "10.96.4.4", &[("http", 8080)]),
            service("lab", "consumer-headless", "None", &[("http", 8080)]),
            service("other", "x", "10.96.9.9", &[("http", 80)]),
        ];
        let vars = service_variables(&services, "lab", true);
        assert_eq!(vars["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(vars["CONSUMER_SERVICE_PORT_HTTP"], "8080");
        assert_eq!(vars["CONSUMER_PORT_8080_TCP_ADDR"], "10.96.4.4");
        assert_eq!(vars["CONSUMER_PORT"], "tcp://10.96.4.4:8080");
        assert!(
            !vars
                .keys()
                .any(|k| k.starts_with("CONSUMER_HEADLESS") || k.starts_with("X_"))
        );
        let vars = service_variables(&services, "lab", false);
        assert!(
            vars.contains_key("KUBERNETES_SERVICE_HOST")
                && !vars.contains_key("CONSUMER_SERVICE_HOST")
        );
    }
}
