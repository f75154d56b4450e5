//! The cluster's own faults and bad starts: the API server killed (the supervisor restarts it, the agent's watches
//! resume, pods keep running and new ones start), a pod's process killed (its container restarts), `cluster up`
//! refused without root and with its port taken, and a crashed supervisor whose remains the next `up` removes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::support::*;

fn supervisor_status(c: &TestCluster) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(c.state_dir.join("cluster.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn component_pid(c: &TestCluster, name: &str) -> Result<u32, String> {
    supervisor_status(c)?["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["name"] == name))
        .and_then(|x| x["pid"].as_u64())
        .map(|p| p as u32)
        .ok_or(format!("{name} has no pid in cluster.json"))
}

/// The trampoline is the component's pid (it execs the program).
pub fn api_server_restart_and_process_death(c: &TestCluster) -> TestResult {
    runtime().block_on(async {
        let ns = c.namespace("faults").await?;
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: steady, namespace: {ns}}}
spec:
  containers:
    - name: c
      image: busybox:1.36
      command: ["sh", "-c", "echo up; while true; do sleep 0.2; done"]
"#
        ))?;
        wait_pod(&c.client, &ns, "steady", Duration::from_secs(60), "ran", |p| phase(p) == "Running").await?;
        let apiserver = component_pid(c, "kube-apiserver")?;
        procs::send_signal(apiserver, 9);
        poll(Duration::from_secs(60), || async {
            component_pid(c, "kube-apiserver").ok().filter(|p| *p != apiserver)
        })
        .await
        .map_err(|e| format!("the supervisor did not restart the API server: {e}"))?;
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.client.clone());
        poll(Duration::from_secs(90), || async { nodes.list(&Default::default()).await.ok().map(drop) })
            .await
            .map_err(|e| format!("the API server did not come back: {e}"))?;
        // A pod created after the restart runs: the agent's watch resumed.
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: after, namespace: {ns}}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: \"busybox:1.36\", command: [\"sh\", \"-c\", \"echo after\"]}}]\n"
        ))?;
        wait_pod(&c.client, &ns, "after", Duration::from_secs(60), "succeeded after the restart", |p| phase(p) == "Succeeded").await?;
        let steady = wait_pod(&c.client, &ns, "steady", Duration::from_secs(5), "kept running", |p| phase(p) == "Running").await?;
        // Kill the container's process: the kubelet's rules restart it.
        let pid = container_pid(&steady)?;
        procs::send_signal(pid, 9);
        wait_pod(&c.client, &ns, "steady", Duration::from_secs(30), "restarted its container", |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).is_some_and(|c| {
                c.restart_count == 1
                    && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    && c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some_and(|t| t.exit_code == 137)
            })
        })
        .await?;
        Ok(())
    })
}

/// The pid of the pod's container process, found through its cgroup.
fn container_pid(pod: &Pod) -> Result<u32, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let hierarchy = node_agent::cgroup::Hierarchy::detect().map_err(|e| e.to_string())?;
    let group = hierarchy.group(std::path::Path::new(&format!(
        "autoscaling-lab-{NAME}/pods/{uid}/c"
    )));
    group
        .pids()
        .into_iter()
        .min()
        .ok_or(format!("no process in the cgroup of pod {uid}"))
}

pub fn bad_starts_are_refused(c: &TestCluster) -> TestResult {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = root.path().join("state");
    let flags = |name: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "up".to_string(),
            format!("--name={name}"),
            format!("--state-dir={}", state.display()),
            "--pod-cidr=10.246.0.0/16".into(),
            "--service-cidr=10.98.0.0/16".into(),
            "--link-cidr=10.243.253.0/30".into(),
            "--wait=60s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // Without root: one line, exit 7.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin("cluster"))
        .args(flags("norootx", &[]))
        .env("HOME", root.path())
        .output()
        .map_err(|e| format!("setpriv: {e}"))?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() != Some(contract::exit::NOT_PERMITTED)
        || !said.contains("needs root")
        || said.lines().count() != 1
    {
        return Err(format!("without root:\n{}", text(&out)));
    }
    // A taken port: one line naming it, exit 6, nothing left.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let port = taken
        .local_addr()
        .map_err(|e| e.to_string())?
        .port()
        .to_string();
    let out = cluster_command(&c.kubeconfig_home, &flags("portx", &["--api-port", &port]));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = std::fs::read_to_string(state.join("logs/supervisor.log")).unwrap_or_default();
    if out.status.code() != Some(contract::exit::RUNTIME_ERROR)
        || !log.contains(&format!("port {port} on 10.243.253.1 is taken"))
    {
        return Err(format!(
            "with port {port} taken:\n{}\nsupervisor log:\n{log}",
            text(&out)
        ));
    }
    if said.is_empty() {
        return Err("the refusal printed nothing on stderr".into());
    }
    let mut args = vec![
        "leftovers".to_string(),
        "--name=portx".into(),
        format!("--state-dir={}", state.display()),
    ];
    args.push("--link-cidr=10.243.253.0/30".into());
    let left = cluster_command(&c.kubeconfig_home, &args);
    if !left.status.success() {
        return Err(format!(
            "the refused start left something:\n{}",
            text(&left)
        ));
    }
    drop(taken);
    Ok(())
}

/// A supervisor killed with SIGKILL takes every process with it; the next `up` removes the rest and starts.
pub fn crash_then_up_cleans(c: &TestCluster) -> TestResult {
    let status = supervisor_status(c)?;
    let pid = status["supervisor_pid"]
        .as_u64()
        .ok_or("no supervisor pid")? as u32;
    let children: Vec<u32> = status["components"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|x| x["pid"].as_u64().map(|p| p as u32))
                .collect()
        })
        .unwrap_or_default();
    procs::send_signal(pid, 9);
    runtime().block_on(async {
        poll(Duration::from_secs(20), || async {
            children.iter().all(|p| procs::is_gone(*p)).then_some(())
        })
        .await
        .map_err(|e| format!("components outlived their supervisor: {e}"))
    })?;
    let mut args = vec!["leftovers".to_string()];
    args.extend(cluster_flags(&c.state_dir));
    let left = cluster_command(&c.kubeconfig_home, &args);
    if left.status.success() {
        return Err(
            "a SIGKILLed supervisor left nothing at all, which cannot be (its namespaces stay)"
                .into(),
        );
    }
    let mut args = vec!["up".to_string(), "--no-switch".into()];
    args.extend(cluster_flags(&c.state_dir));
    let up = cluster_command(&c.kubeconfig_home, &args);
    let said = String::from_utf8_lossy(&up.stdout).into_owned();
    if !up.status.success() || !said.contains("removed an earlier run's") {
        return Err(format!("the second up after a crash:\n{}", text(&up)));
    }
    Ok(())
}
