//! Workloads on the real cluster: the consumer behind a Service reached by name from a Job, readiness gating the
//! EndpointSlice, logs and following them, Jobs that complete and fail with their exit code, an OOM kill, a pod
//! deleted with a drain and replaced by its ReplicaSet.

use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

use crate::support::*;

fn consumer_yaml(ns: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: consumer, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: consumer}}}}
  template:
    metadata: {{labels: {{app: consumer}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: consumer
          image: autoscaling-lab:dev
          command: ["/usr/local/bin/consumer"]
          args: ["--host", "0.0.0.0"]
          env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1}}
          resources: {{limits: {{cpu: 500m, memory: 256Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: consumer, namespace: {ns}}}
spec:
  selector: {{app: consumer}}
  ports: [{{name: http, port: 8080, targetPort: http}}]
"#
    )
}

/// A Job running `generator wait` then a short `generator run` against the consumer's Service name.
fn load_job(ns: &str, name: &str, seconds: u32) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      initContainers:
        - name: wait
          image: autoscaling-lab:dev
          command: ["/usr/local/bin/generator"]
          args: ["wait", "--url", "http://consumer.{ns}.svc.cluster.local:8080", "--timeout", "60s"]
      containers:
        - name: load
          image: autoscaling-lab:dev
          command: ["/usr/local/bin/generator"]
          args: ["run", "--url", "http://consumer.{ns}.svc.cluster.local:8080", "--rate", "40", "--duration", "{seconds}s"]
"#
    )
}

async fn wait_ready_replicas(
    c: &TestCluster,
    ns: &str,
    selector: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    poll(Duration::from_secs(60), || async {
        let ready: Vec<String> = pods_of(&c.client, ns, selector)
            .await
            .iter()
            .filter(|p| ready(p))
            .map(name_of)
            .collect();
        (ready.len() >= n).then_some(ready)
    })
    .await
    .map_err(|e| format!("{n} ready pods of {selector} in {ns}: {e}"))
}

pub fn service_by_name(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("svc").await?;
        c.apply(&consumer_yaml(&ns, 2))?;
        let replicas = wait_ready_replicas(c, &ns, "app=consumer", 2).await?;
        c.apply(&load_job(&ns, "load", 5))?;
        let outcome = wait_job(&c.client, &ns, "load", Duration::from_secs(90)).await?;
        let pod = pods_of(&c.client, &ns, "job-name=load")
            .await
            .into_iter()
            .next()
            .ok_or("no Job pod")?;
        let log = logs(&c.client, &ns, &name_of(&pod), Some("load")).await?;
        if outcome != "Complete" {
            return Err(format!("the load Job {outcome}:\n{log}"));
        }
        let served = log
            .lines()
            .find(|l| l.starts_with("served by:"))
            .ok_or(format!("no `served by` line:\n{log}"))?;
        // Kept-alive connections stay on the replica kube-proxy chose for them, so the load need not reach both;
        // every answer must come from one of the Service's replicas.
        let servers: Vec<&str> = served
            .trim_start_matches("served by:")
            .split(',')
            .filter_map(|s| s.split_whitespace().next())
            .collect();
        if servers.is_empty() || servers.iter().any(|s| !replicas.iter().any(|r| r == s)) {
            return Err(format!(
                "answers came from {servers:?}, not only from the replicas {replicas:?}"
            ));
        }
        if !log.contains("verdict: PASS") {
            return Err(format!("the run did not pass:\n{log}"));
        }
        Ok(())
    })
}

pub fn readiness_gates_endpoints(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("ready").await?;
        c.apply(&consumer_yaml(&ns, 1))?;
        let ready_pods = wait_ready_replicas(c, &ns, "app=consumer", 1).await?;
        // A second replica with the same labels whose readiness probe can never pass.
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: unready, namespace: {ns}, labels: {{app: consumer}}}}
spec:
  containers:
    - name: consumer
      image: autoscaling-lab:dev
      args: ["--host", "0.0.0.0"]
      env: [{{name: POD_NAME, value: unready}}]
      ports: [{{name: http, containerPort: 8080}}]
      readinessProbe: {{httpGet: {{path: /never-ready, port: http}}, periodSeconds: 1, failureThreshold: 1}}
"#
        ))?;
        wait_pod(&c.client, &ns, "unready", Duration::from_secs(60), "ran", |p| phase(p) == "Running").await?;
        let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), &ns);
        let unready_ip = wait_pod(&c.client, &ns, "unready", Duration::from_secs(30), "got an IP", |p| {
            p.status.as_ref().and_then(|s| s.pod_ip.clone()).is_some()
        })
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_default();
        poll(Duration::from_secs(30), || async {
            let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=consumer")).await.ok()?;
            let endpoint = list.items.iter().flat_map(|s| s.endpoints.iter().flatten()).find(|e| e.addresses.contains(&unready_ip))?;
            (endpoint.conditions.as_ref()?.ready == Some(false)).then_some(())
        })
        .await
        .map_err(|e| format!("the unready pod {unready_ip} is not listed as not ready in the EndpointSlice: {e}"))?;
        c.apply(&load_job(&ns, "load", 3))?;
        wait_job(&c.client, &ns, "load", Duration::from_secs(90)).await?;
        let pod = pods_of(&c.client, &ns, "job-name=load").await.into_iter().next().ok_or("no Job pod")?;
        let log = logs(&c.client, &ns, &name_of(&pod), Some("load")).await?;
        let served = log.lines().find(|l| l.starts_with("served by:")).ok_or(format!("no `served by` line:\n{log}"))?;
        if served.contains("unready") || !served.contains(ready_pods[0].as_str()) {
            return Err(format!("traffic reached the unready pod, or missed the ready one: {served}"));
        }
        Ok(())
    })
}

pub fn logs_and_follow(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("logs").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: counter, namespace: {ns}}}
spec:
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.2; done"]
"#
        ))?;
        wait_pod(&c.client, &ns, "counter", Duration::from_secs(60), "ran", |p| phase(p) == "Running").await?;
        let seen = follow_until(&c.client, &ns, "counter", None, "line 15", Duration::from_secs(30)).await?;
        if !seen.iter().any(|l| l.starts_with("err ")) {
            return Err(format!("stderr lines are missing from the log: {seen:?}"));
        }
        let out = c.kubectl(&["-n", &ns, "logs", "counter", "--tail=2", "--timestamps"], None);
        let tail = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = tail.lines().collect();
        if lines.len() != 2 || !lines.iter().all(|l| l.split(' ').next().is_some_and(|t| t.ends_with('Z'))) {
            return Err(format!("kubectl logs --tail=2 --timestamps gave:\n{}", text(&out)));
        }
        // Following sees lines written after it started.
        let before = logs(&c.client, &ns, "counter", None).await?.lines().count();
        let target = format!("line {}", before + 10);
        follow_until(&c.client, &ns, "counter", None, &target, Duration::from_secs(20)).await?;
        Ok(())
    })
}

fn job_yaml(ns: &str, name: &str, script: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: c
          image: busybox:1.36
          command: ["sh", "-c", "{script}"]
{extra}"#
    )
}

pub fn jobs_and_exit_codes(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("jobs").await?;
        c.apply(&job_yaml(&ns, "ok", "echo fine; exit 0", ""))?;
        c.apply(&job_yaml(&ns, "three", "echo failing; exit 3", ""))?;
        c.apply(&job_yaml(
            &ns,
            "oom",
            "echo filling; tail /dev/zero",
            "          resources: {limits: {memory: 48Mi}}\n",
        ))?;
        let ok = wait_job(&c.client, &ns, "ok", Duration::from_secs(60)).await?;
        if ok != "Complete" {
            return Err(format!("job ok: {ok}"));
        }
        let failed = wait_job(&c.client, &ns, "three", Duration::from_secs(60)).await?;
        if failed != "Failed" {
            return Err(format!("job three: {failed}"));
        }
        let pod = pods_of(&c.client, &ns, "job-name=three")
            .await
            .into_iter()
            .next()
            .ok_or("no pod of three")?;
        match terminated(&pod) {
            Some((3, reason)) if reason == "Error" => {}
            other => {
                return Err(format!(
                    "job three's container ended {other:?}, not (3, Error)"
                ));
            }
        }
        if phase(&pod) != "Failed" {
            return Err(format!("job three's pod is {}", phase(&pod)));
        }
        wait_job(&c.client, &ns, "oom", Duration::from_secs(60)).await?;
        let pod = pods_of(&c.client, &ns, "job-name=oom")
            .await
            .into_iter()
            .next()
            .ok_or("no pod of oom")?;
        match terminated(&pod) {
            Some((137, reason)) if reason == "OOMKilled" => Ok(()),
            other => Err(format!(
                "the pod over its memory limit ended {other:?}, not (137, OOMKilled)"
            )),
        }
    })
}

pub fn delete_drains_and_replaces(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("drain").await?;
        c.apply(&format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: worker, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: worker}}}}
  template:
    metadata: {{labels: {{app: worker}}}}
    spec:
      terminationGracePeriodSeconds: 4
      containers:
        - name: c
          image: busybox:1.36
          command: ["sh", "-c", "trap 'echo got TERM; sleep 1; echo drained; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
        - name: stubborn
          image: busybox:1.36
          command: ["sh", "-c", "trap '' TERM; echo ignoring TERM; while true; do sleep 0.1; done"]
"#
        ))?;
        let first = wait_ready_replicas(c, &ns, "app=worker", 1).await?.remove(0);
        follow_until(&c.client, &ns, &first, Some("c"), "started", Duration::from_secs(20)).await?;
        let client = c.client.clone();
        let (ns2, first2) = (ns.clone(), first.clone());
        let follower = tokio::spawn(async move { follow_until(&client, &ns2, &first2, Some("c"), "drained", Duration::from_secs(20)).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let asked = Instant::now();
        delete_pod(&c.client, &ns, &first).await?;
        let drained = follower.await.map_err(|e| e.to_string())??;
        if !drained.iter().any(|l| l == "got TERM") {
            return Err(format!("the container saw no SIGTERM: {drained:?}"));
        }
        // The stubborn container ignores SIGTERM: the pod is gone only after its grace period and a SIGKILL.
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), &ns);
        poll(Duration::from_secs(30), || async { pods.get_opt(&first).await.ok().flatten().is_none().then_some(()) }).await?;
        let took = asked.elapsed();
        if took < Duration::from_secs(3) || took > Duration::from_secs(15) {
            return Err(format!("the pod was removed {took:?} after deletion; its grace period is 4 s"));
        }
        let replacement = wait_ready_replicas(c, &ns, "app=worker", 1).await?;
        if replacement.contains(&first) {
            return Err("the ReplicaSet did not replace the deleted pod".into());
        }
        Ok(())
    })
}

pub fn probes_hooks_and_previous_logs(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("probes").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: probed, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo starting; sleep 2; touch /tmp/started; echo started; while true; do sleep 0.1; done"]
      startupProbe: {{exec: {{command: [test, -f, /tmp/started]}}, periodSeconds: 1, failureThreshold: 20}}
      readinessProbe: {{exec: {{command: [test, -f, /tmp/started]}}, periodSeconds: 1}}
      lifecycle: {{preStop: {{exec: {{command: [sh, -c, "sleep 2"]}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: dies, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c", "touch /tmp/alive; echo run-begins; sleep 2; rm /tmp/alive; echo alive-file-removed; while true; do sleep 0.1; done"]
      livenessProbe: {{exec: {{command: [test, -f, /tmp/alive]}}, periodSeconds: 1, failureThreshold: 2}}
"#
        ))?;
        let probed = wait_pod(&c.client, &ns, "probed", Duration::from_secs(60), "became Ready", ready).await?;
        let started = probed.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).and_then(|c| c.started);
        if started != Some(true) {
            return Err(format!("a Ready container is not `started` ({started:?})"));
        }
        let log = logs(&c.client, &ns, "probed", None).await?;
        if !log.contains("started") {
            return Err(format!("Ready before its startup probe could pass:\n{log}"));
        }
        // The liveness probe fails 2 s into each run: the container is killed and restarted.
        wait_pod(&c.client, &ns, "dies", Duration::from_secs(60), "was restarted by its liveness probe", |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).is_some_and(|c| c.restart_count >= 1)
        })
        .await?;
        if !events(&c.client, &ns, "dies").await.contains("failed liveness probe, will be restarted") {
            return Err(format!("no Killing event for the liveness failure:\n{}", events(&c.client, &ns, "dies").await));
        }
        let previous = c.kubectl(&["-n", &ns, "logs", "dies", "--previous"], None);
        if !String::from_utf8_lossy(&previous.stdout).contains("alive-file-removed") {
            return Err(format!("kubectl logs --previous lacks the first run:\n{}", text(&previous)));
        }
        // The preStop hook (2 s) runs before the SIGTERM, which the container answers at once: the pod is gone
        // after the hook, well within its 10 s grace period.
        let asked = Instant::now();
        delete_pod(&c.client, &ns, "probed").await?;
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), &ns);
        poll(Duration::from_secs(30), || async { pods.get_opt("probed").await.ok().flatten().is_none().then_some(()) }).await?;
        let took = asked.elapsed();
        if took < Duration::from_millis(1800) || took > Duration::from_secs(9) {
            return Err(format!("the pod was gone {took:?} after its deletion: the 2 s preStop hook did not run first, or SIGTERM was not answered"));
        }
        Ok(())
    })
}
