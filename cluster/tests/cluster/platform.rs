//! What a pod has here and what the cluster enforces: a pod's identity, files, environment and limits; the guard
//! that keeps pod traffic on the machine; RBAC by the real authorizer; the real API server's validation of every
//! overlay; pod-level errors for what the node agent cannot run.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::support::*;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn pod_isolation_and_environment(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("iso").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{GREETING: hello, file.txt: "from a configmap"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {ns}}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: probe, namespace: {ns}, labels: {{tier: test}}}}
spec:
  restartPolicy: Never
  securityContext: {{runAsUser: 1234, runAsGroup: 2345, fsGroup: 3456}}
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c"]
      args:
        - |
          echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
          echo "hostname=$(hostname)"
          echo "podip=$POD_IP greeting=$GREETING password=$PASSWORD cpu=$CPU_LIMIT mem=$MEM_LIMIT_MI"
          echo "expanded=$EXPANDED"
          echo "kubernetes=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
          echo "cgroup-limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
          echo "file=$(cat /config/file.txt) label=$(cat /info/labels)"
          echo "sa-namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
          echo "sa-token-bytes=$(wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token)"
          echo "sa-ca=$(grep -c BEGIN /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)"
          grep -E '^(search|nameserver|options)' /etc/resolv.conf
          touch /scratch/ok && echo scratch=writable
          touch /usr/should-not-land 2>/dev/null && echo root=writable || echo root=readonly
      env:
        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
        - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: GREETING}}}}}}
        - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
        - {{name: CPU_LIMIT, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}}}
        - {{name: MEM_LIMIT_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
        - {{name: EXPANDED, value: "$(GREETING)-$(POD_IP)-$(MISSING)"}}
      resources: {{limits: {{cpu: 250m, memory: 96Mi}}}}
      securityContext: {{readOnlyRootFilesystem: true}}
      volumeMounts:
        - {{name: config, mountPath: /config}}
        - {{name: info, mountPath: /info}}
        - {{name: scratch, mountPath: /scratch}}
  volumes:
    - name: config
      configMap: {{name: settings}}
    - name: info
      downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
    - name: scratch
      emptyDir: {{}}
"#
        ))?;
        let pod = wait_pod(&c.client, &ns, "probe", Duration::from_secs(60), "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await?;
        let log = logs(&c.client, &ns, "probe", None).await?;
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        let expect = [
            "uid=1234 gid=2345".to_string(),
            "3456".to_string(),
            "hostname=probe".to_string(),
            format!("podip={ip} greeting=hello password=s3cret cpu=250 mem=96"),
            format!("expanded=hello-{ip}-$(MISSING)"),
            "kubernetes=10.97.0.1:443".to_string(),
            format!("cgroup-limit={}", 96 * 1024 * 1024),
            "file=from a configmap label=tier=\"test\"".to_string(),
            format!("sa-namespace={ns}"),
            "sa-ca=1".to_string(),
            format!("search {ns}.svc.cluster.local svc.cluster.local cluster.local"),
            "nameserver 10.97.0.10".to_string(),
            "options ndots:5".to_string(),
            "scratch=writable".to_string(),
            "root=readonly".to_string(),
        ];
        let missing: Vec<&String> = expect.iter().filter(|e| !log.contains(e.as_str())).collect();
        if !missing.is_empty() || log.contains("sa-token-bytes=0") {
            return Err(format!("the pod's view lacks {missing:?}:\n{log}"));
        }
        if std::path::Path::new("/usr/should-not-land").exists() {
            return Err("a pod's write reached this machine's /usr".into());
        }
        Ok(())
    })
}

pub fn cpu_limit_throttles(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("cpu").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: burner, namespace: {ns}}}
spec:
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c", "while true; do :; done"]
      resources: {{limits: {{cpu: 200m}}}}
"#
        ))?;
        wait_pod(
            &c.client,
            &ns,
            "burner",
            Duration::from_secs(60),
            "ran",
            |p| phase(p) == "Running",
        )
        .await?;
        let cpu = || async {
            let out = c.kubectl(
                &[
                    "get",
                    "--raw",
                    &format!("/api/v1/nodes/autoscaling-lab-{NAME}/proxy/metrics/resource"),
                ],
                None,
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find(|l| {
                    l.starts_with("container_cpu_usage_seconds_total{")
                        && l.contains("pod=\"burner\"")
                })
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let first = cpu()
            .await
            .ok_or("no CPU sample for the burner in /metrics/resource")?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let second = cpu().await.ok_or("no second CPU sample")?;
        let cores = (second - first) / 4.0;
        // Run alone, the loop gets its whole quota, and no more: the CFS quota throttles it at 200m.
        if !(0.15..=0.25).contains(&cores) {
            return Err(format!("a busy loop limited to 200m used {cores:.3} cores"));
        }
        Ok(())
    })
}

pub fn guard_keeps_pod_traffic_on_the_machine(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("guard").await?;
        let before = guard_count().await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: escape, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
    - name: c
      image: busybox:1.36
      command: ["bash", "-c"]
      args:
        - |
          for target in 192.0.2.10/80 1.1.1.1/443 8.8.8.8/53; do
            if timeout 2 bash -c "exec 3<>/dev/tcp/$target" 2>/dev/null; then echo "reached $target"; else echo "blocked $target"; fi
          done
          if timeout 2 bash -c "exec 3<>/dev/tcp/kubernetes.default.svc.cluster.local/443"; then echo "reached the API"; fi
"#
        ))?;
        wait_pod(&c.client, &ns, "escape", Duration::from_secs(60), "finished", |p| matches!(phase(p), "Succeeded" | "Failed")).await?;
        let log = logs(&c.client, &ns, "escape", None).await?;
        if log.contains("reached 1") || log.contains("reached 8") || log.matches("blocked").count() != 3 {
            return Err(format!("a pod reached an address outside the cluster:\n{log}"));
        }
        if !log.contains("reached the API") {
            return Err(format!("the pod could not reach the API server through its Service:\n{log}"));
        }
        let after = guard_count().await?;
        if after < before + 3 {
            return Err(format!("the guard counted {} dropped packets for three attempts", after - before));
        }
        Ok(())
    })
}

async fn guard_count() -> Result<u64, String> {
    let out = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("autoscaling-lab-{NAME}"),
            "nft",
            "list",
            "counter",
            "inet",
            &format!("autoscaling_lab_{NAME}"),
            "pod_escapes",
        ])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or(format!(
            "no guard counter: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
}

pub fn rbac_is_enforced(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("rbac").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: get-pods, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: get-pods}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]
"#
        ))?;
        let token = c.kubectl(&["-n", &ns, "create", "token", "reader"], None);
        if !token.status.success() {
            return Err(format!("kubectl create token: {}", text(&token)));
        }
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        // A kubeconfig with the token alone: the admin's client certificate would be sent along otherwise.
        let admin: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(&c.admin_kubeconfig).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let cluster = &admin["clusters"][0]["cluster"];
        let reader_config = c.state_dir.join("reader.kubeconfig");
        let reader = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "reader", "user": {"token": token}}],
            "contexts": [{"name": "reader", "context": {"cluster": "c", "user": "reader", "namespace": ns}}],
            "current-context": "reader",
        });
        std::fs::write(&reader_config, serde_json::to_string(&reader).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let as_reader = |args: &[&str]| {
            std::process::Command::new("kubectl")
                .arg(format!("--kubeconfig={}", reader_config.display()))
                .args(args)
                .output()
                .expect("kubectl")
        };
        let list = as_reader(&["get", "pods"]);
        if !list.status.success() {
            return Err(format!("the reader cannot list pods:\n{}", text(&list)));
        }
        let delete = as_reader(&["delete", "configmap", "kube-root-ca.crt"]);
        let said = String::from_utf8_lossy(&delete.stderr).into_owned();
        if delete.status.success() || !said.contains("Forbidden") || !said.contains("cannot delete resource \"configmaps\"") {
            return Err(format!("a verb the reader lacks was not refused with 403:\n{}", text(&delete)));
        }
        Ok(())
    })
}

/// Every overlay passes the real API server's validation (server-side dry run) once the CRDs it uses are in.
pub fn overlays_pass_server_dry_run(c: &TestCluster) -> TestResult {
    let crds = repo().join("../shared/fixtures/crds");
    if !crds.is_dir() {
        return Err(format!(
            "{} is missing: the CRD fixtures sit beside the repo (as in CI)",
            crds.display()
        ));
    }
    let mut files: Vec<_> = std::fs::read_dir(&crds)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        let out = c.kubectl(
            &["apply", "--server-side", "-f", &file.display().to_string()],
            None,
        );
        if !out.status.success() {
            return Err(format!(
                "installing the CRD {}:\n{}",
                file.display(),
                text(&out)
            ));
        }
    }
    let established = c.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        None,
    );
    if !established.status.success() {
        return Err(format!("CRDs not established:\n{}", text(&established)));
    }
    // The namespace must exist for a dry run of the objects in it; the production overlay is server-side applied
    // as a dry run too, namespace included.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: autoscaling-lab}\n")?;
    let overlays = repo().join("manifests/overlays");
    let mut names: Vec<String> = std::fs::read_dir(&overlays)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut failures = Vec::new();
    for name in &names {
        let rendered = std::process::Command::new("kubectl")
            .args(["kustomize", &overlays.join(name).display().to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        if !rendered.status.success() {
            failures.push(format!("{name}: kubectl kustomize: {}", text(&rendered)));
            continue;
        }
        let yaml = String::from_utf8_lossy(&rendered.stdout).into_owned();
        let out = c.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml));
        if !out.status.success() {
            failures.push(format!("{name}:\n{}", text(&out)));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// What the node agent cannot run is an error on the pod, with an event, and the agent goes on.
pub fn unsupported_is_a_pod_error(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("bad").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: noimage, namespace: {ns}}}
spec:
  containers: [{{name: c, image: "nginx:1.27"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: novolume, namespace: {ns}}}
spec:
  containers: [{{name: c, image: "busybox:1.36", command: [sleep, "60"], volumeMounts: [{{name: v, mountPath: /v}}]}}]
  volumes: [{{name: v, nfs: {{server: 192.0.2.1, path: /x}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: noprogram, namespace: {ns}}}
spec:
  containers: [{{name: c, image: "autoscaling-lab:dev", command: ["/usr/local/bin/not-a-lab-binary"]}}]
"#
        ))?;
        let waiting = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()))
        };
        let pod = wait_pod(&c.client, &ns, "noimage", Duration::from_secs(30), "waited with ErrImageNeverPull", |p| {
            waiting(p).is_some_and(|(r, _)| r == "ErrImageNeverPull")
        })
        .await?;
        if !waiting(&pod).is_some_and(|(_, m)| m.contains("images.yaml")) {
            return Err(format!("the message does not name the mapping file: {:?}", waiting(&pod)));
        }
        let pod = wait_pod(&c.client, &ns, "novolume", Duration::from_secs(30), "said why its volume fails", |p| {
            waiting(p).is_some_and(|(_, m)| m.contains("nfs is not supported"))
        })
        .await?;
        drop(pod);
        if !events(&c.client, &ns, "novolume").await.contains("FailedMount") {
            return Err("no FailedMount event for the unsupported volume".into());
        }
        wait_pod(&c.client, &ns, "noprogram", Duration::from_secs(30), "said its program is missing", |p| {
            waiting(p).is_some_and(|(r, m)| r == "CreateContainerError" && m.contains("not-a-lab-binary"))
        })
        .await?;
        // The agent still runs pods.
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: fine, namespace: {ns}}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: \"busybox:1.36\", command: [\"true\"]}}]\n"
        ))?;
        wait_pod(&c.client, &ns, "fine", Duration::from_secs(30), "succeeded", |p| phase(p) == "Succeeded").await?;
        Ok(())
    })
}

/// A deny-all NetworkPolicy (the chaos partition's) really cuts the pod off, both ways, and its removal heals it;
/// the node's probes still pass meanwhile.
pub fn network_policy_partition_cuts_traffic(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("netpol").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: target, namespace: {ns}, labels: {{app: target}}}}
spec:
  containers:
    - name: consumer
      image: autoscaling-lab:dev
      args: ["--host", "0.0.0.0"]
      env: [{{name: POD_NAME, value: target}}]
      ports: [{{name: http, containerPort: 8080}}]
      readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1}}
    - name: outward
      image: busybox:1.36
      command: ["bash", "-c"]
      args:
        - |
          while true; do
            if timeout 1 bash -c "exec 3<>/dev/tcp/kubernetes.default.svc.cluster.local/443"; then echo "out ok"; else echo "out blocked"; fi
            sleep 0.5
          done
---
apiVersion: v1
kind: Service
metadata: {{name: target, namespace: {ns}}}
spec:
  selector: {{app: target}}
  ports: [{{port: 8080, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}}}
spec:
  containers:
    - name: c
      image: busybox:1.36
      command: ["bash", "-c"]
      args:
        - |
          while true; do
            if timeout 1 bash -c "exec 3<>/dev/tcp/target.{ns}.svc.cluster.local/8080"; then echo "reach ok"; else echo "reach blocked"; fi
            sleep 0.5
          done
"#
        ))?;
        wait_pod(&c.client, &ns, "target", Duration::from_secs(60), "became Ready", ready).await?;
        follow_until(&c.client, &ns, "client", None, "reach ok", Duration::from_secs(30)).await?;
        follow_until(&c.client, &ns, "target", Some("outward"), "out ok", Duration::from_secs(30)).await?;
        c.apply(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: cut, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: target}}}}\n  policyTypes: [Ingress, Egress]\n"
        ))?;
        follow_until(&c.client, &ns, "client", None, "reach blocked", Duration::from_secs(20)).await?;
        // Cut both ways: the target cannot reach out either (the API server through its Service).
        follow_until(&c.client, &ns, "target", Some("outward"), "out blocked", Duration::from_secs(20)).await?;
        let still_ready = wait_pod(&c.client, &ns, "target", Duration::from_secs(5), "stayed Ready (the node's probes pass)", ready).await;
        still_ready?;
        c.kubectl(&["-n", &ns, "delete", "networkpolicy", "cut"], None);
        let before = logs(&c.client, &ns, "client", None).await?.lines().count();
        let healed = poll(Duration::from_secs(20), || async {
            let log = logs(&c.client, &ns, "client", None).await.ok()?;
            log.lines().skip(before).any(|l| l == "reach ok").then_some(())
        })
        .await;
        healed.map_err(|e| format!("the pod was not reachable again after the policy went: {e}"))
    })
}
