//! The lab itself on the real cluster, as `make dev` installs it: KEDA, metrics-server and Prometheus from their own
//! manifests (scripts/cluster/stack.sh), the development overlay time-scaled; then the heavy Job scaled by the real
//! KEDA and HPA, `--monitor` from the host, the cluster chaos actions measured, the chaos RBAC checked by the real
//! authorizer, KEDA's webhook, and a load Job started before its target exists.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;

use crate::support::*;

pub const LAB: &str = "autoscaling-lab";
/// The time scale of the lab's overlay and Jobs in these tests.
pub const TIME_SCALE: &str = "0.2";

pub fn repo() -> std::path::PathBuf {
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
    apply_overlay(c, "development")?;
    for deployment in ["scaler", "consumer"] {
        rollout(c, deployment, "120s")?;
    }
    Ok(())
}

/// `kubectl rollout status` of a Deployment of the lab, failing with the namespace's pods.
pub fn rollout(c: &TestCluster, deployment: &str, timeout: &str) -> TestResult {
    let out = c.kubectl(
        &[
            "-n",
            LAB,
            "rollout",
            "status",
            &format!("deployment/{deployment}"),
            &format!("--timeout={timeout}"),
        ],
        None,
    );
    if out.status.success() {
        return Ok(());
    }
    let pods = c.kubectl(&["-n", LAB, "get", "pods", "-o", "wide"], None);
    // What the Deployment's containers printed last, the previous (crashed) run's too: the reason is usually there.
    let target = format!("deployment/{deployment}");
    let mut logs = String::new();
    for previous in ["--previous=true", "--previous=false"] {
        let out = c.kubectl(
            &[
                "-n",
                LAB,
                "logs",
                &target,
                "--all-containers",
                "--prefix",
                "--tail=40",
                previous,
            ],
            None,
        );
        logs.push_str(&format!("logs {previous}:\n{}\n", text(&out)));
    }
    Err(format!(
        "rollout of {deployment}:\n{}\n{}\n{logs}",
        text(&out),
        text(&pods)
    ))
}

/// An overlay as `make dev OVERLAY=NAME LAB_TIME_SCALE=...` applies it: kustomize, the local filter, server-side apply.
pub fn apply_overlay(c: &TestCluster, overlay: &str) -> TestResult {
    let dir = repo().join("manifests/overlays").join(overlay);
    let rendered = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !rendered.status.success() {
        return Err(format!(
            "kubectl kustomize {}:\n{}",
            dir.display(),
            text(&rendered)
        ));
    }
    let objects = filter(&String::from_utf8_lossy(&rendered.stdout), TIME_SCALE)?;
    let out = c.kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&objects),
    );
    if !out.status.success() {
        return Err(format!("applying the {overlay} overlay:\n{}", text(&out)));
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
        // From one replica, as a user starts it (the tests before may have left the consumer scaled up).
        poll(Duration::from_secs(120), || async {
            (hpa(c).await?.status?.current_replicas? == 1).then_some(())
        })
        .await
        .map_err(|e| {
            format!("the consumer did not settle at one replica before the heavy Job: {e}")
        })?;
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
        // The figures the report gives (first scale event's phases), in the test output for the record.
        if let Some(start) = log.find("scale events") {
            let section: Vec<&str> = log[start..].lines().take(24).collect();
            eprintln!(
                "heavy Job (peak {peak} ready), its report:\n{}",
                section.join("\n")
            );
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

/// A Service's cluster IP in the lab's namespace.
pub fn service_ip(c: &TestCluster, service: &str) -> Result<String, String> {
    let out = c.kubectl(
        &[
            "-n",
            LAB,
            "get",
            "service",
            service,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if ip.is_empty() {
        return Err(format!("no {service} Service:\n{}", text(&out)));
    }
    Ok(ip)
}

pub fn consumer_url(c: &TestCluster) -> Result<String, String> {
    Ok(format!("http://{}:8080", service_ip(c, "consumer")?))
}

/// The generator on this machine against the lab's Service address (this machine reaches Service IPs).
pub fn generator(
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
        .args(if extra.contains(&"--duration") {
            &[][..]
        } else {
            &["--duration", "8s"][..]
        })
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
pub fn service_account_kubeconfig(
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

/// The real KEDA webhook refuses a ScaledObject KEDA would refuse, with KEDA's message.
pub fn keda_webhook_refuses_with_kedas_message(c: &TestCluster) -> TestResult {
    let second = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: second, namespace: {LAB}}}\nspec:\n  minReplicaCount: 1\n  scaleTargetRef: {{name: consumer}}\n  triggers: [{{type: cpu, metricType: Utilization, metadata: {{value: \"50\"}}}}]\n"
    );
    let out = c.kubectl(&["apply", "-f", "-"], Some(&second));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success()
        || !said.contains("admission webhook \"vscaledobject.kb.io\" denied the request")
        // KEDA checks the ScaledObjects first, then the HPAs: which one answers depends on whether its operator has
        // made keda-hpa-consumer yet.
        || !(said.contains("already managed by the ScaledObject 'consumer'")
            || said.contains("already managed by the hpa 'keda-hpa-consumer'"))
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

/// The lab's pods that are not Ready, with why: `name: Pending (Unschedulable: 0/1 nodes are available: ...)`.
fn pods_not_ready(pods: &[k8s_openapi::api::core::v1::Pod]) -> Vec<(String, bool, String)> {
    pods.iter()
        .filter(|p| !ready(p) && p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let unscheduled = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False");
            let why = unscheduled
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| phase(p).to_string());
            (
                name_of(p),
                unscheduled.is_some_and(|c| c.reason.as_deref() == Some("Unschedulable")),
                why,
            )
        })
        .collect()
}

/// The production overlay applied for real over the lab: KEDA takes its bounds (the HPA's minimum 3), two scalers and
/// the consumer's budget exist, and every pod runs or is left unscheduled by the real scheduler for lack of room on
/// this one node (printed, with the scheduler's reason). Then compare-hpa: the ScaledObject removed, the plain CPU and
/// memory HPA reads utilisation from metrics-server (the node agent's cgroup figures). Runs after every other lab test.
pub fn production_and_compare_hpa_overlays_run(c: &TestCluster) -> TestResult {
    apply_overlay(c, "production")?;
    runtime().block_on(async {
        let min3 = poll(Duration::from_secs(90), || async {
            (hpa(c).await?.spec.min_replicas == Some(3)).then_some(())
        })
        .await;
        min3.map_err(|e| {
            format!("KEDA did not give keda-hpa-consumer the production minimum of 3: {e}")
        })?;
        // Settled: every consumer and scaler pod Ready or refused by the scheduler.
        let settled = poll(Duration::from_secs(120), || async {
            let consumers = pods_of(&c.client, LAB, "app.kubernetes.io/name=consumer").await;
            let scalers = pods_of(&c.client, LAB, "app.kubernetes.io/name=scaler").await;
            let live = |ps: &[k8s_openapi::api::core::v1::Pod]| {
                ps.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count()
            };
            let all: Vec<_> = consumers.iter().chain(scalers.iter()).cloned().collect();
            let stuck = pods_not_ready(&all);
            (live(&consumers) >= 3
                && live(&scalers) == 2
                && stuck.iter().all(|(_, unscheduled, _)| *unscheduled))
            .then_some(stuck)
        })
        .await
        .map_err(|e| {
            let out = c.kubectl(&["-n", LAB, "get", "pods", "-o", "wide"], None);
            format!("the production overlay did not settle: {e}\n{}", text(&out))
        })?;
        for (name, _, why) in &settled {
            println!("production on one node: {name} not scheduled: {why}");
        }
        let pdb = c.kubectl(&["-n", LAB, "get", "pdb", "-o", "name"], None);
        if !String::from_utf8_lossy(&pdb.stdout).contains("poddisruptionbudget") {
            return Err(format!(
                "no PodDisruptionBudget from the production overlay:\n{}",
                text(&pdb)
            ));
        }
        Ok(())
    })?;
    let out = c.kubectl(
        &[
            "-n",
            LAB,
            "delete",
            "scaledobject",
            "consumer",
            "--wait=true",
        ],
        None,
    );
    if !out.status.success() {
        return Err(text(&out));
    }
    runtime().block_on(async {
        poll(Duration::from_secs(60), || async {
            hpa(c).await.is_none().then_some(())
        })
        .await
        .map_err(|e| format!("KEDA left keda-hpa-consumer after its ScaledObject went: {e}"))
    })?;
    apply_overlay(c, "compare-hpa")?;
    runtime().block_on(async {
        let api = Api::<HorizontalPodAutoscaler>::namespaced(c.client.clone(), LAB);
        poll(Duration::from_secs(150), || async {
            let status = api.get_opt("consumer").await.ok()??.status?;
            status.current_metrics?.iter().find_map(|m| {
                let r = m.resource.as_ref()?;
                (r.name == "cpu").then_some(r.current.average_utilization?)
            })
        })
        .await
        .map(|cpu| {
            println!("compare-hpa: the CPU HPA reads {cpu}% utilisation from metrics-server")
        })
        .map_err(|e| {
            let out = c.kubectl(&["-n", LAB, "describe", "hpa", "consumer"], None);
            format!(
                "the compare-hpa HPA never read CPU from metrics-server: {e}\n{}",
                text(&out)
            )
        })
    })
}

/// The kafka overlay on the local cluster, where no Strimzi operator runs: the repo's KRaft broker as a pod behind
/// Strimzi's bootstrap Service name (scripts/cluster/local_overlay.py), KEDA's own kafka scaler reading the consumer
/// group's lag from it, then `job-kafka-light.yaml` as written: every message acked (verify is open: see the issue note).
pub fn kafka_overlay_runs_its_jobs(c: &TestCluster) -> TestResult {
    apply_overlay(c, "kafka")?;
    for deployment in ["kafka-broker", "consumer-kafka"] {
        rollout(c, deployment, "180s")?;
    }
    runtime().block_on(async {
        // KEDA's kafka scaler connected: the ScaledObject is Ready.
        poll(Duration::from_secs(90), || async {
            let out = c.kubectl(
                &[
                    "-n",
                    LAB,
                    "get",
                    "scaledobject",
                    "consumer-kafka",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            );
            (String::from_utf8_lossy(&out.stdout).trim() == "True").then_some(())
        })
        .await
        .map_err(|e| {
            let out = c.kubectl(
                &["-n", LAB, "describe", "scaledobject", "consumer-kafka"],
                None,
            );
            format!(
                "KEDA's kafka trigger never became Ready against the broker pod: {e}\n{}",
                text(&out)
            )
        })?;
        for (file, job, container) in [
            ("job-kafka-light.yaml", "load-test-kafka-light", "producer"),
            ("job-kafka-verify.yaml", "load-test-kafka-verify", "verify"),
        ] {
            let path = repo().join("manifests/components/kafka").join(file);
            let out = c.kubectl(&["apply", "-f", &path.display().to_string()], None);
            if !out.status.success() {
                return Err(format!("kubectl apply -f {file}:\n{}", text(&out)));
            }
            let outcome = wait_job(&c.client, LAB, job, Duration::from_secs(300)).await?;
            let pod = pods_of(&c.client, LAB, &format!("job-name={job}"))
                .await
                .into_iter()
                .next()
                .ok_or(format!("no pod of {job}"))?;
            let log = logs(&c.client, LAB, &name_of(&pod), Some(container)).await?;
            if outcome != "Complete" {
                // The workers' side of it: what they fetched, processed, committed and when they rebalanced.
                let workers = c.kubectl(
                    &[
                        "-n",
                        LAB,
                        "logs",
                        "-l",
                        "app.kubernetes.io/name=consumer-kafka",
                        "--prefix",
                        "--tail=60",
                    ],
                    None,
                );
                return Err(format!(
                    "{job} {outcome}:\n{log}\nworkers:\n{}",
                    text(&workers)
                ));
            }
            println!("{job}: {}", log.lines().last().unwrap_or(""));
        }
        Ok(())
    })
}
