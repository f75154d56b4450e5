//! The cluster chaos actions against the real API server during a real load, with the manifests' RBAC as the real
//! authorizer enforces it: each fault done and undone, PodDisruptionBudgets honoured, a cancelled run undoing what it
//! did, a drain of the one node and the pods' return (each chaos Role's grants: `lab_chaos_rbac`).

use std::time::Duration;

use crate::fault_report::faults;
use crate::lab::*;
use crate::lab_chaos_rbac::{account_with, grants_of, remove_test_rbac};
use crate::support::*;

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
