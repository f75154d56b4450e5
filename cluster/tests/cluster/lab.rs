//! The lab itself on the real cluster, as `make dev` installs it: KEDA, metrics-server and Prometheus from their own
//! manifests (scripts/cluster/stack.sh), the development overlay time-scaled; then the heavy Job scaled by the real
//! KEDA and HPA, `--monitor` from the host, the cluster chaos actions measured, the chaos RBAC checked by the real
//! authorizer, KEDA's webhook, and a load Job started before its target exists.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;

use crate::support::*;

const LAB: &str = "autoscaling-lab";
/// The time scale of the lab's overlay and Jobs in these tests.
pub const TIME_SCALE: &str = "0.2";

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The stack and the development overlay, once, before the lab tests.
pub fn install(c: &TestCluster) -> TestResult {
    let stack = std::process::Command::new("bash")
        .arg(repo().join("scripts/cluster/stack.sh"))
        .arg("--kubeconfig")
        .arg(&c.admin_kubeconfig)
        .output()
        .map_err(|e| e.to_string())?;
    if !stack.status.success() {
        return Err(format!("scripts/cluster/stack.sh:\n{}", text(&stack)));
    }
    let rendered = std::process::Command::new("kubectl")
        .args([
            "kustomize",
            &repo()
                .join("manifests/overlays/development")
                .display()
                .to_string(),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let overlay = filter(&String::from_utf8_lossy(&rendered.stdout), TIME_SCALE)?;
    let out = c.kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&overlay),
    );
    if !out.status.success() {
        return Err(format!("applying the development overlay:\n{}", text(&out)));
    }
    for deployment in ["scaler", "consumer"] {
        let out = c.kubectl(
            &[
                "-n",
                LAB,
                "rollout",
                "status",
                &format!("deployment/{deployment}"),
                "--timeout=120s",
            ],
            None,
        );
        if !out.status.success() {
            return Err(format!("rollout of {deployment}:\n{}", text(&out)));
        }
    }
    Ok(())
}

/// scripts/cluster/local_overlay.py over rendered YAML.
fn filter(yaml: &str, scale: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .arg(repo().join("scripts/cluster/local_overlay.py"))
        .arg(scale)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(yaml.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn hpa(c: &TestCluster) -> Option<HorizontalPodAutoscaler> {
    Api::<HorizontalPodAutoscaler>::namespaced(c.client.clone(), LAB)
        .get_opt("keda-hpa-consumer")
        .await
        .ok()
        .flatten()
}

async fn ready_replicas(c: &TestCluster) -> i32 {
    Api::<Deployment>::namespaced(c.client.clone(), LAB)
        .get("consumer")
        .await
        .ok()
        .and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// `kubectl apply -f job-heavy.yaml` as a user runs it: KEDA makes the HPA, the HPA scales the consumer up and,
/// after the load and the (time-scaled) stabilization window, down; the Job's log ends with the scaling report whose
/// decisions come from the HPA's events.
pub fn heavy_job_scales_with_keda_and_the_hpa(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        poll(Duration::from_secs(60), || async { hpa(c).await.map(drop) })
            .await
            .map_err(|e| format!("KEDA made no HPA for the ScaledObject: {e}"))?;
        let job = repo().join("manifests/components/load-generator/job-heavy.yaml");
        let out = c.kubectl(&["apply", "-f", &job.display().to_string()], None);
        if !out.status.success() {
            return Err(format!("kubectl apply -f job-heavy.yaml:\n{}", text(&out)));
        }
        let peak = poll(Duration::from_secs(180), || async {
            let ready = ready_replicas(c).await;
            (ready > 1).then_some(ready)
        })
        .await
        .map_err(|e| {
            format!("the consumer never had more than one ready replica under the heavy load: {e}")
        })?;
        let outcome = wait_job(&c.client, LAB, "load-test-heavy", Duration::from_secs(600)).await?;
        let pod = pods_of(&c.client, LAB, "job-name=load-test-heavy")
            .await
            .into_iter()
            .next()
            .ok_or("no Job pod")?;
        let log = logs(&c.client, LAB, &name_of(&pod), Some("load-generator")).await?;
        if outcome != "Complete" {
            return Err(format!("the heavy Job {outcome}:\n{log}"));
        }
        for expected in [
            "scale events",
            "decision times from HPA SuccessfulRescale events",
            "scaling (kubernetes deployment autoscaling-lab/consumer",
        ] {
            if !log.contains(expected) {
                return Err(format!("the report lacks {expected:?}:\n{log}"));
            }
        }
        let back = poll(Duration::from_secs(120), || async {
            let current = hpa(c).await?.status?.current_replicas?;
            (current == 1).then_some(())
        })
        .await;
        back.map_err(|e| {
            format!("the HPA did not scale back to 1 after the load (peak {peak} ready): {e}")
        })
    })
}

fn consumer_url(c: &TestCluster) -> Result<String, String> {
    let out = c.kubectl(
        &[
            "-n",
            LAB,
            "get",
            "service",
            "consumer",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if ip.is_empty() {
        return Err(format!("no consumer Service:\n{}", text(&out)));
    }
    Ok(format!("http://{ip}:8080"))
}

/// The generator on this machine against the lab's Service address (this machine reaches Service IPs).
fn generator(
    c: &TestCluster,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> Result<(std::process::Output, serde_json::Value), String> {
    let report = c
        .state_dir
        .join(format!("report-{}.json", std::process::id()));
    let url = consumer_url(c)?;
    let out = std::process::Command::new(bin("generator"))
        .args([
            "run",
            "--url",
            &url,
            "--rate",
            "20",
            "--duration",
            "8s",
            "--no-metrics",
            "--monitor",
            "--namespace",
            LAB,
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .map_err(|e| e.to_string())?;
    let json = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(&report);
    Ok((out, json))
}

/// A kubeconfig for a ServiceAccount of the lab's namespace (its token only).
fn service_account_kubeconfig(
    c: &TestCluster,
    account: &str,
) -> Result<std::path::PathBuf, String> {
    let token = c.kubectl(
        &["-n", LAB, "create", "token", account, "--duration=1h"],
        None,
    );
    if !token.status.success() {
        return Err(format!("kubectl create token {account}:\n{}", text(&token)));
    }
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let admin: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(&c.admin_kubeconfig).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "c", "user": account, "namespace": LAB}}],
        "current-context": account,
    });
    let path = c.state_dir.join(format!("{account}.kubeconfig"));
    std::fs::write(
        &path,
        serde_json::to_string(&config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

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
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// The real KEDA webhook refuses a ScaledObject KEDA would refuse, with KEDA's message.
pub fn keda_webhook_refuses_with_kedas_message(c: &TestCluster) -> TestResult {
    let second = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: second, namespace: {LAB}}}\nspec:\n  scaleTargetRef: {{name: consumer}}\n  triggers: [{{type: cpu, metricType: Utilization, metadata: {{value: \"50\"}}}}]\n"
    );
    let out = c.kubectl(&["apply", "-f", "-"], Some(&second));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success()
        || !said.contains("admission webhook \"vscaledobject.kb.io\" denied the request")
        || !said.contains("already managed by the ScaledObject 'consumer'")
    {
        return Err(format!(
            "a second ScaledObject for the consumer was not refused by KEDA's webhook:\n{}",
            text(&out)
        ));
    }
    Ok(())
}

/// A load Job whose target does not exist waits in its init container, then fails at its timeout saying why.
pub fn a_job_before_the_lab_waits_then_fails(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("early").await?;
        let job = std::fs::read_to_string(repo().join("manifests/components/load-generator/job-light.yaml")).map_err(|e| e.to_string())?;
        // The file as written, in a namespace without the lab, and its wait shortened from 300 s for the test.
        let job = job
            .replace("namespace: autoscaling-lab", &format!("namespace: {ns}"))
            .replace("consumer.autoscaling-lab.svc", &format!("consumer.{ns}.svc"))
            .replace("\"--timeout\", \"300s\"", "\"--timeout\", \"5s\"")
            .replace("serviceAccountName: load-generator", "serviceAccountName: default");
        if !job.contains("\"--timeout\", \"5s\"") {
            return Err("job-light.yaml's init container no longer waits with --timeout 300s: update this test".into());
        }
        c.apply(&job)?;
        let outcome = wait_job(&c.client, &ns, "load-test-light", Duration::from_secs(60)).await?;
        let pod = pods_of(&c.client, &ns, "job-name=load-test-light").await.into_iter().next().ok_or("no Job pod")?;
        let log = logs(&c.client, &ns, &name_of(&pod), Some("wait-for-consumer")).await?;
        if outcome != "Failed" || !log.contains("not ready") {
            return Err(format!("the early Job {outcome}; its init container said:\n{log}"));
        }
        Ok(())
    })
}
