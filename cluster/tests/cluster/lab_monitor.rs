//! `generator run --monitor` against the real API server from this machine (kubeconfig auth; the in-cluster
//! ServiceAccount path runs in the heavy Job): what it reads, and what it says when an input is refused or gone.

use crate::lab::*;
use crate::support::*;

/// `--monitor` from this machine with kubeconfig auth; with a ServiceAccount that may read nothing, the run fails
/// with a runtime error naming what was refused.
pub fn monitor_from_the_host_and_its_rbac(c: &TestCluster) -> TestResult {
    let (out, report) = generator(c, &c.admin_kubeconfig, &[])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success()
        || !said.contains("scaling (kubernetes deployment autoscaling-lab/consumer")
    {
        return Err(format!("--monitor from the host:\n{}", text(&out)));
    }
    if report.is_null() {
        return Err("no report.json".into());
    }
    let apply = c.kubectl(
        &["-n", LAB, "create", "serviceaccount", "nobody-here"],
        None,
    );
    if !apply.status.success() && !String::from_utf8_lossy(&apply.stderr).contains("AlreadyExists")
    {
        return Err(text(&apply));
    }
    let kubeconfig = service_account_kubeconfig(c, "nobody-here")?;
    let (out, _) = generator(c, &kubeconfig, &[])?;
    let all = printed(&out);
    if out.status.code() != Some(contract::exit::RUNTIME_ERROR)
        || !all.contains("forbidden")
        || !all.contains("deployments")
    {
        return Err(format!(
            "a monitor without RBAC did not fail naming the refusal:\n{}",
            text(&out)
        ));
    }
    Ok(())
}

/// A ServiceAccount bound to the manifests' monitor Role with `rules` filtered by `keep`, and its kubeconfig.
pub fn account_with_monitor_rules(
    c: &TestCluster,
    account: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<std::path::PathBuf, String> {
    let role_file = repo().join("manifests/components/load-generator/role.yaml");
    let mut role: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&role_file).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", role_file.display()))?;
    let rules: Vec<serde_json::Value> = role["rules"]
        .as_array()
        .ok_or("role.yaml has no rules")?
        .iter()
        .filter(|r| keep(r))
        .cloned()
        .collect();
    role["rules"] = serde_json::Value::Array(rules);
    role["metadata"]["name"] = account.into();
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": LAB}},
        role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": account, "namespace": LAB},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": LAB}]},
    ]});
    c.apply(&serde_json::to_string(&objects).map_err(|e| e.to_string())?)?;
    service_account_kubeconfig(c, account)
}

fn missing(report: &serde_json::Value) -> Vec<String> {
    report["scaling"]["inputs_missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

/// Inputs the monitor cannot read are named in the report while the counts still come in: the events refused by a
/// Role without them (the decisions fall back to the HPA's lastScaleTime), the scaler's /explain gone (no trigger
/// readings); with the API unreachable, the counts come from the scaler's /explain instead.
pub fn monitor_names_the_inputs_it_could_not_read(c: &TestCluster) -> TestResult {
    let mut problems = Vec::new();
    let kubeconfig = account_with_monitor_rules(c, "monitor-without-events", |rule| {
        !rule["resources"].to_string().contains("\"events\"")
    })?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        format!("http://{}", l.local_addr().map_err(|e| e.to_string())?)
    };
    let (out, report) = generator(c, &kubeconfig, &["--scaler-url", &closed])?;
    let gone = missing(&report);
    let observed = report["scaling"]["observations"].as_u64().unwrap_or(0);
    if !out.status.success()
        || observed == 0
        || !gone
            .iter()
            .any(|m| m.starts_with("events:") && m.contains("forbidden"))
        || !gone.iter().any(|m| m.starts_with("signals:"))
    {
        problems.push(format!(
            "without events and /explain: {observed} observations, missing {gone:?}\n{}",
            text(&out)
        ));
    }
    // The API unreachable (a closed port), the scaler's /explain through its Service answers the counts.
    let scaler = service_ip(c, "scaler")?;
    let (out, report) = generator(
        c,
        &c.admin_kubeconfig,
        &[
            "--kube-api-url",
            &closed,
            "--scaler-url",
            &format!("http://{scaler}:6001"),
        ],
    )?;
    let sources: Vec<String> = report["scaling"]["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["source"].as_str().map(str::to_string))
        .collect();
    if !out.status.success() || sources.is_empty() || sources.iter().any(|s| s != "explain") {
        problems.push(format!(
            "the API unreachable, the counts did not come from the scaler: sources {sources:?}\n{}",
            text(&out)
        ));
    }
    // A Deployment that does not exist is an error naming it, and the run fails.
    let (out, _) = generator(
        c,
        &c.admin_kubeconfig,
        &["--deployment", "no-such-consumer"],
    )?;
    let said = printed(&out);
    if out.status.code() != Some(contract::exit::RUNTIME_ERROR)
        || !said.contains("no-such-consumer")
    {
        problems.push(format!("a missing Deployment:\n{}", text(&out)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n"))
    }
}

/// What a run printed, stdout then stderr.
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
