//! The chaos RBAC files as the real authorizer enforces them: each file beside the monitor Role suffices for its own
//! faults, and each of its grants is needed.

use crate::fault_report::{fault_lines, faults, tail};
use crate::lab::*;
use crate::support::*;

/// Each RBAC run starts from a consumer at its full count: what the run before it evicted and deleted is back.
fn consumer_settled(c: &TestCluster) -> TestResult {
    rollout(c, "consumer", "120s")
}

/// One RBAC grant: a verb on a resource of an API group, limited to some names or not.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Grant {
    group: String,
    resource: String,
    verb: String,
    names: Option<serde_json::Value>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {} ({group})", self.verb, self.resource)
    }
}

/// A chaos RBAC file's rules, one grant per (group, resource, verb).
pub(crate) fn grants_of(file: &str) -> Result<Vec<Grant>, String> {
    let path = repo()
        .join("manifests/components/load-generator")
        .join(file);
    let role: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut grants = Vec::new();
    for rule in role["rules"]
        .as_array()
        .ok_or(format!("{file}: no rules"))?
    {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    grants.push(Grant {
                        group: group.clone(),
                        resource: resource.clone(),
                        verb,
                        names: rule.get("resourceNames").cloned(),
                    });
                }
            }
        }
    }
    Ok(grants)
}

fn rules(grants: &[Grant]) -> serde_json::Value {
    grants
        .iter()
        .map(|g| {
            let mut rule = serde_json::json!({"apiGroups": [g.group], "resources": [g.resource], "verbs": [g.verb]});
            if let Some(names) = &g.names {
                rule["resourceNames"] = names.clone();
            }
            rule
        })
        .collect()
}

/// Marks the cluster-scoped RBAC objects these tests make, so they are removed by label.
const TEST_RBAC_LABEL: &str = "autoscaling-lab.test/rbac";

/// A ServiceAccount with the manifests' monitor Role and `grants`: a Role in the lab's namespace, or a ClusterRole
/// with a ClusterRoleBinding (`cluster_wide`), as the chaos files ship them.
pub(crate) fn account_with(
    c: &TestCluster,
    account: &str,
    cluster_wide: bool,
    grants: &[Grant],
) -> Result<std::path::PathBuf, String> {
    let kubeconfig = crate::lab_monitor::account_with_monitor_rules(c, account, |_| true)?;
    let name = format!("{account}-chaos");
    let (role_kind, binding_kind, namespace) = if cluster_wide {
        ("ClusterRole", "ClusterRoleBinding", serde_json::Value::Null)
    } else {
        ("Role", "RoleBinding", LAB.into())
    };
    let metadata = |n: &str| {
        let mut m = serde_json::json!({"name": n, "labels": {TEST_RBAC_LABEL: "true"}});
        if !namespace.is_null() {
            m["namespace"] = namespace.clone();
        }
        m
    };
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": role_kind, "metadata": metadata(&name), "rules": rules(grants)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind, "metadata": metadata(&name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": LAB}]},
    ]});
    c.apply(&serde_json::to_string(&objects).map_err(|e| e.to_string())?)?;
    Ok(kubeconfig)
}

pub(crate) fn remove_test_rbac(c: &TestCluster) -> TestResult {
    let selector = format!("{TEST_RBAC_LABEL}=true");
    let out = c.kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            &selector,
            "--ignore-not-found",
        ],
        None,
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// A fault the authorizer refused: reported denied, or its undo refused.
fn refused(fault: &serde_json::Value) -> bool {
    fault["status"] == "denied"
        || fault["undo_error"]
            .as_str()
            .is_some_and(|e| e.contains("forbidden"))
}

/// The faults each chaos file serves, spaced so that each finds a ready consumer pod (a replacement is Ready about
/// 6 s after its predecessor went, on its readiness probe's period). The runs last 20 s, requests time out after 2 s.
const NAMESPACED_FAULTS: &str = "at=1s,action=partition-pod,duration=2s;at=1s,action=scaler-to-zero,duration=2s;\
at=5s,action=evict-pod;at=15s,action=delete-pod";
const NODE_FAULTS: &str =
    "at=1s,action=cordon-node,duration=2s;at=4s,action=drain-node,duration=2s";

/// Each chaos RBAC file beside the monitor Role alone suffices for its own faults (the real authorizer refuses
/// nothing), and each of its grants is needed: without it, one of those faults is refused. The node file's
/// sufficiency is proven by the drain test, where a drain really runs.
pub fn chaos_rbac_is_sufficient_and_each_grant_needed(c: &TestCluster) -> TestResult {
    let result = check_chaos_rbac(c);
    let removed = remove_test_rbac(c);
    result.and(removed)
}

fn check_chaos_rbac(c: &TestCluster) -> TestResult {
    let mut problems = Vec::new();
    let namespaced = grants_of("chaos-role.yaml")?;
    let kubeconfig = account_with(c, "chaos-namespaced", false, &namespaced)?;
    consumer_settled(c)?;
    let (out, report) = generator(
        c,
        &kubeconfig,
        &[
            "--duration",
            "20s",
            "--timeout",
            "2s",
            "--chaos",
            NAMESPACED_FAULTS,
        ],
    )?;
    let all = faults(&report);
    if all.len() != 4
        || all
            .iter()
            .any(|f| f["status"] != "done" || !f["undo_error"].is_null())
    {
        problems.push(format!(
            "chaos-role.yaml alone, not every fault done and undone (exit {:?}):\n{}\n{}",
            out.status.code(),
            tail(&out),
            fault_lines(&all)
        ));
    }
    for (file, cluster_wide, specs) in [
        ("chaos-role.yaml", false, NAMESPACED_FAULTS),
        ("node-chaos/clusterrole.yaml", true, NODE_FAULTS),
    ] {
        let grants = grants_of(file)?;
        if grants.len() < 4 {
            problems.push(format!("{file}: only {} grants", grants.len()));
        }
        for (i, without) in grants.iter().enumerate() {
            let rest: Vec<Grant> = grants.iter().filter(|g| *g != without).cloned().collect();
            let account = format!(
                "chaos-{}-without-{i}",
                if cluster_wide { "nodes" } else { "ns" }
            );
            let kubeconfig = account_with(c, &account, cluster_wide, &rest)?;
            consumer_settled(c)?;
            let (out, report) = generator(
                c,
                &kubeconfig,
                &["--duration", "20s", "--timeout", "2s", "--chaos", specs],
            )?;
            let all = faults(&report);
            if !all.iter().any(refused) {
                problems.push(format!(
                    "{file} without {without}: no fault was refused, so the grant is not needed (exit {:?}):\n{}\n{}",
                    out.status.code(),
                    tail(&out),
                    fault_lines(&all)
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n"))
    }
}
