//! The cluster chaos actions against the real API server during a real load, with the manifests' RBAC as the real
//! authorizer enforces it: each fault done and undone, PodDisruptionBudgets honoured, a cancelled run undoing what it
//! did, a drain of the one node and the pods' return, and each chaos Role's grants sufficient and each needed.

use std::time::Duration;

use crate::lab::*;
use crate::support::*;

fn faults(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["chaos"]["faults"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Each cluster fault against the real API during a real load, done and undone, with the load-generator
/// ServiceAccount's own RBAC (the manifests' Roles); an eviction a PodDisruptionBudget forbids comes back 429 and is
/// retried within its bound.
pub fn chaos_faults_on_the_real_api(c: &TestCluster) -> TestResult {
    let kubeconfig = service_account_kubeconfig(c, "load-generator")?;
    let mut problems = Vec::new();
    for (action, extra) in [
        ("delete-pod", ""),
        ("partition-pod", ",duration=3s"),
        ("scaler-to-zero", ",duration=4s"),
        ("cordon-node", ",duration=2s"),
    ] {
        let chaos = format!("at=2s,action={action}{extra}");
        let (out, report) = generator(c, &kubeconfig, &["--chaos", &chaos])?;
        let fault = faults(&report).into_iter().next().unwrap_or_default();
        if !out.status.success() || fault["status"] != "done" {
            problems.push(format!(
                "{action}: status {} exit {:?}\n{}",
                fault["status"],
                out.status.code(),
                text(&out)
            ));
        }
    }
    // A budget that allows no disruption: the eviction is refused with 429, retried, then reported blocked.
    c.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: consumer-test-budget, namespace: {LAB}}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app.kubernetes.io/name: consumer}}}}\n"
    ))?;
    let (out, report) = generator(c, &kubeconfig, &["--chaos", "at=2s,action=evict-pod"])?;
    let fault = faults(&report).into_iter().next().unwrap_or_default();
    let retries = fault["retries"].as_u64().unwrap_or(0);
    if fault["status"] != "blocked" || retries == 0 {
        problems.push(format!(
            "evict-pod against a PDB: status {} retries {retries}\n{}",
            fault["status"],
            text(&out)
        ));
    }
    c.kubectl(&["-n", LAB, "delete", "pdb", "consumer-test-budget"], None);
    let (out, report) = generator(c, &kubeconfig, &["--chaos", "at=2s,action=evict-pod"])?;
    let fault = faults(&report).into_iter().next().unwrap_or_default();
    if fault["status"] != "done" {
        problems.push(format!(
            "evict-pod without a PDB: status {}\n{}",
            fault["status"],
            text(&out)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n"))
    }
}

/// One line per fault: when, what, how it ended and why; what a failure message leads with.
fn fault_lines(faults: &[serde_json::Value]) -> String {
    let field = |f: &serde_json::Value, k: &str| f[k].as_str().map(str::to_string);
    faults
        .iter()
        .map(|f| {
            let mut line = format!(
                "  at {}s {}: {}",
                f["at_s"],
                field(f, "action").unwrap_or_default(),
                field(f, "status").unwrap_or_else(|| "?".into())
            );
            for (label, key) in [("hit", "hit"), ("error", "error"), ("undo", "undo_error")] {
                if let Some(v) = field(f, key) {
                    line.push_str(&format!("; {label}: {v}"));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last lines a run printed (its verdict and last ticks): enough to place a failure without the whole log.
fn tail(out: &std::process::Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Each RBAC run starts from a consumer at its full count: what the run before it evicted and deleted is back.
fn consumer_settled(c: &TestCluster) -> TestResult {
    rollout(c, "consumer", "120s")
}

/// One RBAC grant: a verb on a resource of an API group, limited to some names or not.
#[derive(Clone, Debug, PartialEq)]
struct Grant {
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
fn grants_of(file: &str) -> Result<Vec<Grant>, String> {
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
fn account_with(
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

fn remove_test_rbac(c: &TestCluster) -> TestResult {
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

/// The one node of this cluster.
fn node_name(c: &TestCluster) -> Result<String, String> {
    let out = c.kubectl(
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
        None,
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if name.is_empty() {
        Err(format!("no node:\n{}", text(&out)))
    } else {
        Ok(name)
    }
}

/// What the faults of the cancel test change, now: the chaos NetworkPolicies, the scaler's replicas, the node's
/// unschedulable flag, the consumer pods carrying the partition label.
fn fault_marks(c: &TestCluster, node: &str) -> (String, String, String, String) {
    let get = |args: &[&str]| {
        String::from_utf8_lossy(&c.kubectl(args, None).stdout)
            .trim()
            .to_string()
    };
    (
        get(&[
            "-n",
            LAB,
            "get",
            "networkpolicy",
            "-l",
            "app.kubernetes.io/managed-by=generator-chaos",
            "-o",
            "name",
        ]),
        get(&[
            "-n",
            LAB,
            "get",
            "deployment",
            "scaler",
            "-o",
            "jsonpath={.spec.replicas}",
        ]),
        get(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]),
        get(&[
            "-n",
            LAB,
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].metadata.labels}",
        ]),
    )
}

/// A run interrupted (SIGINT, as Ctrl-C or a Job's deletion) while its faults hold undoes them before it exits:
/// the partition's NetworkPolicy and label removed, the scaler's count restored, the node uncordoned.
pub fn a_cancelled_run_undoes_its_faults(c: &TestCluster) -> TestResult {
    let node = node_name(c)?;
    let before = fault_marks(c, &node);
    let kubeconfig = service_account_kubeconfig(c, "load-generator")?;
    let mut child = std::process::Command::new(bin("generator"))
        .args([
            "run",
            "--url",
            &consumer_url(c)?,
            "--rate",
            "10",
            "--duration",
            "60s",
            "--no-metrics",
        ])
        .args(["--namespace", LAB, "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--chaos",
            // Durations past the run: only the interruption undoes them.
            "at=1s,action=partition-pod,duration=10m;at=1s,action=scaler-to-zero,duration=10m;\
             at=1s,action=cordon-node,duration=10m",
        ])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let held = runtime().block_on(poll(Duration::from_secs(30), || async {
        let (policies, scaler, unschedulable, labels) = fault_marks(c, &node);
        (!policies.is_empty()
            && scaler == "0"
            && unschedulable == "true"
            && labels.contains("chaos-partition"))
        .then_some(())
    }));
    procs::send_signal(child.id(), 2);
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > Duration::from_secs(30) => {
                let _ = child.kill();
                return Err("the generator did not exit within 30 s of SIGINT".into());
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let out = std::process::Output { status, ..out };
    held.map_err(|e| {
        format!(
            "the faults never all held ({:?}): {e}\n{}",
            fault_marks(c, &node),
            text(&out)
        )
    })?;
    let after = fault_marks(c, &node);
    // The pods themselves may come and go; none may keep the partition label.
    let undone = (&after.0, &after.1, &after.2) == (&before.0, &before.1, &before.2)
        && !after.3.contains("chaos-partition");
    if status.code() != Some(contract::exit::INTERRUPTED) || !undone {
        return Err(format!(
            "after SIGINT: exit {:?}; before {before:?}, after {after:?}\n{}",
            status.code(),
            text(&out)
        ));
    }
    Ok(())
}

/// Deployments of every namespace not at their ready count, as `namespace/name ready/wanted`.
/// What the containers of every pod not Ready printed before their last exit.
fn crashed_logs(c: &TestCluster) -> String {
    let out = c.kubectl(&["get", "pods", "-A", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut logs = String::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        let statuses = pod["status"]["containerStatuses"].as_array();
        if statuses.is_none_or(|s| s.iter().all(|c| c["ready"] == true)) {
            continue;
        }
        let (ns, name) = (
            pod["metadata"]["namespace"].as_str().unwrap_or("?"),
            pod["metadata"]["name"].as_str().unwrap_or("?"),
        );
        for previous in ["--previous=true", "--previous=false"] {
            let out = c.kubectl(
                &[
                    "-n",
                    ns,
                    "logs",
                    name,
                    "--all-containers",
                    "--prefix",
                    "--tail=25",
                    previous,
                ],
                None,
            );
            logs.push_str(&format!("{ns}/{name} logs {previous}:\n{}\n", text(&out)));
        }
    }
    logs
}

fn not_ready_workloads(c: &TestCluster) -> Vec<String> {
    let out = c.kubectl(
        &["get", "deployments,statefulsets", "-A", "-o", "json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| {
            let wanted = w["spec"]["replicas"].as_u64().unwrap_or(1);
            let ready = w["status"]["readyReplicas"].as_u64().unwrap_or(0);
            (ready < wanted).then(|| {
                format!(
                    "{}/{} {ready}/{wanted}",
                    w["metadata"]["namespace"].as_str().unwrap_or("?"),
                    w["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
        })
        .collect()
}

/// The one node drained by the generator with only the node-chaos ClusterRole beside the monitor Role: the
/// consumer, held by a PodDisruptionBudget, stays (the drain reports blocked after retries); every other pod of the
/// node (KEDA, CoreDNS, metrics-server, Prometheus, the scaler) is evicted; the node is uncordoned after the fault's
/// duration although the drain still retries; then every Deployment and StatefulSet is ready again. Runs last of the
/// lab tests.
pub fn drain_respects_the_budget_and_the_pods_come_back(c: &TestCluster) -> TestResult {
    let result = check_drain(c);
    let budget = c.kubectl(
        &[
            "-n",
            LAB,
            "delete",
            "pdb",
            "drain-test-budget",
            "--ignore-not-found",
        ],
        None,
    );
    let removed = remove_test_rbac(c);
    let back = runtime().block_on(poll(Duration::from_secs(180), || async {
        not_ready_workloads(c).is_empty().then_some(())
    }));
    result?;
    if !budget.status.success() {
        return Err(text(&budget));
    }
    removed?;
    back.map_err(|e| {
        let pods = c.kubectl(&["get", "pods", "-A", "-o", "wide"], None);
        let events = c.kubectl(
            &[
                "get",
                "events",
                "-A",
                "--sort-by=.lastTimestamp",
                "-o",
                "wide",
            ],
            None,
        );
        let events = String::from_utf8_lossy(&events.stdout).into_owned();
        let recent: Vec<&str> = events.lines().rev().take(40).collect();
        format!(
            "after the drain, not ready again: {:?}: {e}\n{}\nthe last events:\n{}\n{}",
            not_ready_workloads(c),
            text(&pods),
            recent.into_iter().rev().collect::<Vec<_>>().join("\n"),
            crashed_logs(c)
        )
    })
}

fn check_drain(c: &TestCluster) -> TestResult {
    let kubeconfig = account_with(
        c,
        "chaos-nodes",
        true,
        &grants_of("node-chaos/clusterrole.yaml")?,
    )?;
    c.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: drain-test-budget, namespace: {LAB}}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app.kubernetes.io/name: consumer}}}}\n"
    ))?;
    let uids = |ns_args: &[&str]| {
        let mut args = vec!["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"];
        args.extend_from_slice(ns_args);
        String::from_utf8_lossy(&c.kubectl(&args, None).stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let consumer_before = uids(&["-n", LAB, "-l", "app.kubernetes.io/name=consumer"]);
    let (out, report) = generator(
        c,
        &kubeconfig,
        &[
            "--duration",
            "12s",
            "--chaos",
            "at=2s,action=drain-node,duration=3s",
        ],
    )?;
    let fault = faults(&report).into_iter().next().unwrap_or_default();
    let returned = fault["returned_after_s"].as_f64().unwrap_or(0.0);
    let said = fault.to_string();
    let mut problems = Vec::new();
    if fault["status"] != "blocked"
        || fault["retries"].as_u64().unwrap_or(0) < 2
        || !said.contains("consumer")
    {
        problems.push(format!(
            "the drain was not held back by the budget on the consumer: {fault:#}"
        ));
    }
    if said.contains("forbidden") {
        problems.push(format!(
            "node-chaos/clusterrole.yaml beside the monitor Role does not suffice: {fault:#}"
        ));
    }
    if !(3.0..8.0).contains(&returned) {
        problems.push(format!(
            "uncordoned {returned} s after the fault, its duration is 3 s: {fault:#}"
        ));
    }
    // A fault not done names what it hit in its error: `blocked node/NAME (E of N pod(s) evicted): ...`; all but
    // the consumer's.
    let error = fault["error"].as_str().unwrap_or("");
    let counts: Vec<usize> = error
        .split_once(" pod(s) evicted)")
        .and_then(|(before, _)| before.rsplit_once('('))
        .map_or("", |(_, counts)| counts)
        .split(" of ")
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    match counts[..] {
        [evicted, total] if evicted + consumer_before.len() == total && evicted >= 3 => {}
        _ => problems.push(format!(
            "the drain did not evict every pod but the consumer's ({} of them): {error}",
            consumer_before.len(),
        )),
    }
    if uids(&["-n", LAB, "-l", "app.kubernetes.io/name=consumer"]) != consumer_before {
        problems.push("the budget did not keep the consumer's pods".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", problems.join("\n"), text(&out)))
    }
}
