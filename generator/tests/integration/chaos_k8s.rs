//! Cluster faults (`generator run --chaos`) against the stand-in Kubernetes API ([`crate::kube_standin`]: the one
//! stand-in these tests allow, as no API server can run here), during a real load on a real consumer: every action
//! acts on the API objects and is undone; a rule missing from the RBAC manifests is reported as denied and the run
//! still finishes; a PodDisruptionBudget that blocks an eviction is reported after bounded retries; a cancelled run
//! undoes what is in force; and each chaos RBAC file suffices for its own faults and every rule of it is needed by one. The partition
//! is checked on the API objects (the policy and the label, in force and then gone): the stand-in has no network to
//! cut, so the consumer keeps serving.

use crate::common;
use crate::kube_standin::{
    CHAOS_ROLE, MONITOR_ROLE, NODE_CHAOS_ROLE, NS, Rule, World, manifest_rules, rules_of,
    rules_without, serve,
};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use generator::chaos::cluster::PARTITION_LABEL;
use generator::chaos::{ChaosTasks, Cluster, ClusterConfig, ClusterFault, FaultStatus, Pacing};
use generator::profile::ChaosSpec;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Setup {
    world: Arc<Mutex<World>>,
    api: String,
    consumer: common::Consumer,
    dir: tempfile::TempDir,
}

async fn setup(rules: Vec<Rule>) -> Setup {
    let world = Arc::new(Mutex::new(World::new(rules)));
    let api = serve(world.clone()).await;
    let consumer = common::start_consumer("consumer-c1", &[]).await;
    Setup {
        world,
        api,
        consumer,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Setup {
    /// `generator run` in this process (the binary's own entry), with the stand-in API and a report file.
    async fn run(&self, extra: &[&str], shutdown: CancellationToken) -> (i32, Value) {
        let report = self.dir.path().join("report.json");
        let mut args = vec![
            "generator",
            "run",
            "--url",
            &self.consumer.url,
            "--no-metrics",
            "--quiet",
            "--drain-timeout",
            "1s",
            "--kube-api-url",
            &self.api,
            "--namespace",
            NS,
            "--deployment",
            "consumer",
            "--report",
            report.to_str().expect("path"),
        ];
        args.extend_from_slice(extra);
        let cli = generator::Cli::try_parse_from(args).expect("flags");
        let code = generator::app::run_cli(cli, shutdown).await;
        let text = std::fs::read_to_string(&report).expect("report.json written");
        (code, serde_json::from_str(&text).expect("report JSON"))
    }
}

fn faults(report: &Value) -> BTreeMap<String, Value> {
    report["chaos"]["faults"]
        .as_array()
        .expect("chaos.faults")
        .iter()
        .map(|f| (f["action"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

#[tokio::test]
async fn every_cluster_action_acts_through_the_api_during_a_real_load_and_is_undone() {
    let s = setup(manifest_rules()).await;
    let (code, report) = s
        .run(
            &[
                "--rate",
                "40",
                "--duration",
                "3s",
                "--chaos-threshold",
                "lost<100%",
                "--monitor",
                "--monitor-interval",
                "100ms",
                "--chaos",
                "at=200ms,action=partition-pod,target=pod/consumer-c2,duration=400ms",
                "--chaos",
                "at=200ms,action=scaler-to-zero,duration=400ms",
                "--chaos",
                "at=200ms,action=cordon-node,target=node/n3,duration=400ms",
                "--chaos",
                "at=1s,action=delete-pod,target=pod/consumer-c3",
                "--chaos",
                "at=1s,action=evict-pod",
                "--chaos",
                "at=1500ms,action=drain-node,target=node/n1",
            ],
            CancellationToken::new(),
        )
        .await;
    assert_eq!(code, 0, "verdict: {}", report["verdict"]);
    assert!(report["requests"].as_u64().unwrap() > 60, "the load ran");
    let f = faults(&report);
    assert_eq!(f.len(), 6, "{f:#?}");
    for (action, fault) in &f {
        assert_eq!(fault["status"], "done", "{action}: {fault:#}");
        assert!(
            fault["requests"].as_u64().unwrap() > 0,
            "{action}: measured"
        );
    }
    assert_eq!(report["chaos"]["thresholds"][0]["passed"], true);
    // What --monitor saw the autoscaler do: the scaler at zero failed KEDA's trigger and its fallback (5 replicas)
    // stood in, within that fault's window; nothing of the kind around the delete at 1 s, after the scaler was back.
    let zero = &f["scaler-to-zero"]["autoscaler"];
    assert!(zero["steps"].as_u64().unwrap() >= 1, "{zero:#}");
    assert!(zero["failed_readings"].as_u64().unwrap() >= 1, "{zero:#}");
    assert!(zero["fallback_steps"].as_u64().unwrap() >= 1, "{zero:#}");
    assert!(
        zero["changes"][0].as_str().unwrap().contains("3 -> 5"),
        "{zero:#}"
    );
    let delete = &f["delete-pod"]["autoscaler"];
    assert!(delete["steps"].as_u64().unwrap() >= 1, "{delete:#}");
    assert_eq!(delete["fallback_steps"], 0, "{delete:#}");

    // delete-pod and evict-pod (the oldest ready pod: c1): replaced by new pods that turned Ready.
    assert!(
        f["delete-pod"]["hit"]
            .as_str()
            .unwrap()
            .contains("pod/consumer-c3 on node/n3")
    );
    assert!(
        f["evict-pod"]["hit"]
            .as_str()
            .unwrap()
            .contains("pod/consumer-c1")
    );
    assert_eq!(f["evict-pod"]["retries"], 0);
    for a in ["delete-pod", "evict-pod"] {
        let ready = f[a]["replacement_ready_after_s"].as_f64().expect(a);
        assert!(
            ready >= 0.1,
            "{a}: replaced after the ReplicaSet's delay ({ready})"
        );
        assert!(
            f[a]["replacement"]
                .as_str()
                .unwrap()
                .starts_with("consumer-r")
        );
    }
    // The undone ones: back after their duration.
    for a in ["partition-pod", "scaler-to-zero", "cordon-node"] {
        let back = f[a]["returned_after_s"].as_f64().expect(a);
        assert!((0.39..1.5).contains(&back), "{a}: undone after {back}s");
    }
    assert!(
        f["partition-pod"]["left_targets_after_s"]
            .as_f64()
            .is_some()
    );
    assert!(
        f["drain-node"]["hit"]
            .as_str()
            .unwrap()
            .contains("1 of 1 pod(s) evicted")
    );

    let w = s.world.lock().unwrap();
    assert!(w.pod(NS, "consumer-c1").is_none() && w.pod(NS, "consumer-c3").is_none());
    // The drain evicted coredns (another namespace), not the DaemonSet pod nor the mirror pod.
    assert!(w.pod("kube-system", "coredns-1").is_none());
    assert!(w.pod("kube-system", "kube-proxy-n1").is_some());
    assert!(w.pod("kube-system", "etcd-n1").is_some());
    // Cordons lifted: n3 after its duration, the drained n1 at the end of the run.
    assert!(!w.cordoned("n1") && !w.cordoned("n3"), "{:#?}", w.nodes);
    assert_eq!(w.count("PATCH /api/v1/nodes/n1 "), 2);
    // The partition: a deny-all policy selecting the labelled pod, gone afterwards with the label.
    assert_eq!(
        w.count(
            "POST /apis/networking.k8s.io/v1/namespaces/autoscaling-lab/networkpolicies -> 201"
        ),
        1
    );
    assert_eq!(w.count("DELETE /apis/networking.k8s.io/v1/namespaces/autoscaling-lab/networkpolicies/chaos-partition-consumer-c2 -> 200"), 1);
    assert!(w.network_policies.is_empty());
    assert!(w.pod(NS, "consumer-c2").unwrap()["metadata"]["labels"][PARTITION_LABEL].is_null());
    // The scaler: 2 -> 0 -> 2 through the scale subresource.
    assert_eq!(w.scales["scaler"], 2);
    assert_eq!(
        w.count("PATCH /apis/apps/v1/namespaces/autoscaling-lab/deployments/scaler/scale -> 200"),
        2
    );
}

#[tokio::test]
async fn a_rule_missing_from_the_rbac_is_reported_as_denied_and_the_run_finishes() {
    let s = setup(rules_without(
        manifest_rules(),
        "Role/load-generator-chaos",
        "pods",
        "delete",
    ))
    .await;
    let (code, report) = s
        .run(
            &[
                "--rate",
                "40",
                "--duration",
                "1500ms",
                "--chaos",
                "at=300ms,action=delete-pod",
            ],
            CancellationToken::new(),
        )
        .await;
    // docs/generator.md: a fault that could not be carried out (other than a budget) is a runtime error, exit 6.
    assert_eq!(code, 6, "verdict: {}", report["verdict"]);
    assert!(
        report["requests"].as_u64().unwrap() > 30,
        "the load ran to its end"
    );
    let f = &faults(&report)["delete-pod"];
    assert_eq!(f["status"], "denied");
    assert!(f["hit"].is_null());
    let error = f["error"].as_str().unwrap();
    assert!(
        error.contains("cannot delete resource \"pods\"") && error.contains("load-generator"),
        "{error}"
    );
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .starts_with("FAIL chaos:")
    );
    assert!(s.world.lock().unwrap().pod(NS, "consumer-c1").is_some());
}

#[tokio::test]
async fn a_budget_that_blocks_an_eviction_is_reported_after_bounded_retries() {
    let s = setup(manifest_rules()).await;
    s.world.lock().unwrap().pdbs.insert(
        (NS.into(), "consumer-pdb".into()),
        (BTreeMap::from([("app".into(), "consumer".into())]), 3),
    );
    let began = Instant::now();
    // 2 s of load (20 s at a tenth): the retries stop at min(3 s, the rest of the load).
    let (code, report) = tokio::time::timeout(
        Duration::from_secs(20),
        s.run(
            &[
                "--rate",
                "40",
                "--duration",
                "20s",
                "--time-scale",
                "0.1",
                "--chaos-threshold",
                "recovery<30s",
                "--chaos",
                "at=2s,action=evict-pod",
            ],
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ends: a blocked eviction is not retried forever");
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "{:?}",
        began.elapsed()
    );
    let f = &faults(&report)["evict-pod"];
    assert_eq!(f["status"], "blocked", "{f:#}");
    let retries = f["retries"].as_u64().unwrap();
    assert!(retries >= 3, "retried with back-off: {retries}");
    let error = f["error"].as_str().unwrap();
    assert!(
        error.contains(
            "The disruption budget consumer-pdb needs 3 healthy pods and has 3 currently"
        ) && error.contains(&format!("after {retries} retries")),
        "{error}"
    );
    let w = s.world.lock().unwrap();
    assert_eq!(
        w.count("POST /api/v1/namespaces/autoscaling-lab/pods/consumer-c1/eviction -> 429") as u64,
        retries + 1
    );
    assert!(w.pod(NS, "consumer-c1").is_some());
    // The budget did its job: that alone is no failure, but a chaos threshold on the fault cannot pass (exit 1).
    assert_eq!(code, 1, "verdict: {}", report["verdict"]);
    assert_eq!(report["chaos"]["thresholds"][0]["passed"], false);
}

#[tokio::test]
async fn a_cancelled_run_undoes_the_partition_the_cordon_and_the_scaler() {
    let s = Arc::new(setup(manifest_rules()).await);
    let shutdown = CancellationToken::new();
    let run = {
        let (s, shutdown) = (s.clone(), shutdown.clone());
        tokio::spawn(async move {
            s.run(
                &[
                    "--rate",
                    "40",
                    "--duration",
                    "20s",
                    "--chaos",
                    "at=100ms,action=partition-pod,target=pod/consumer-c2,duration=30s",
                    "--chaos",
                    "at=100ms,action=scaler-to-zero,duration=30s",
                    "--chaos",
                    "at=100ms,action=cordon-node,target=node/n2",
                ],
                shutdown,
            )
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let w = s.world.lock().unwrap();
            if w.network_policies.len() == 1 && w.scales["scaler"] == 0 && w.cordoned("n2") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the faults took effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let (code, report) = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the run stops")
        .expect("run task");
    assert_eq!(code, 5, "interrupted: {}", report["verdict"]);
    let w = s.world.lock().unwrap();
    assert!(w.network_policies.is_empty(), "{:?}", w.network_policies);
    assert!(w.pod(NS, "consumer-c2").unwrap()["metadata"]["labels"][PARTITION_LABEL].is_null());
    assert_eq!(w.scales["scaler"], 2);
    assert!(!w.cordoned("n2"));
    for (action, f) in faults(&report) {
        assert!(
            f["returned_after_s"].as_f64().is_some(),
            "{action} undone: {f:#}"
        );
    }
}

/// A library client on the stand-in serving `world`, as `generator run` builds it (kube-rs's own 429 retries off).
async fn cluster_on(world: Arc<Mutex<World>>) -> Cluster {
    let api = serve(world).await;
    let mut config = kube::Config::new(api.parse().expect("url"));
    config.default_retry = false;
    let client = kube::Client::try_from(config).expect("client");
    Cluster::new(
        client,
        ClusterConfig {
            namespace: NS.into(),
            deployment: "consumer".into(),
            scaler: "scaler".into(),
            selector: None,
        },
    )
}

fn pacing(evict_retry: Duration) -> Pacing {
    let start = Instant::now();
    Pacing {
        start,
        end: start + Duration::from_secs(5),
        evict_retry,
        poll: Duration::from_millis(20),
    }
}

/// The faults the namespaced chaos Role serves, and those the opt-in node-chaos ClusterRole serves.
const NAMESPACED: [&str; 4] = [
    "at=0s,action=partition-pod,target=pod/consumer-c2,duration=50ms",
    "at=0s,action=scaler-to-zero,duration=50ms",
    "at=100ms,action=delete-pod,target=pod/consumer-c3",
    "at=150ms,action=evict-pod,target=pod/consumer-c2",
];
const ON_NODES: [&str; 2] = [
    "at=0s,action=cordon-node,target=node/n3,duration=50ms",
    "at=200ms,action=drain-node,target=node/n1,duration=50ms",
];

/// `specs` once each, through the library, against a stand-in with `rules`.
async fn every_action(rules: Vec<Rule>, specs: &[&str]) -> Vec<ClusterFault> {
    let cluster = cluster_on(Arc::new(Mutex::new(World::new(rules)))).await;
    let specs = specs
        .iter()
        .map(|t| ChaosSpec::parse_flag(t).expect("spec"))
        .collect();
    let tasks = ChaosTasks::spawn(cluster, specs, pacing(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(700)).await;
    tasks.finish().await
}

#[tokio::test]
async fn a_drain_held_back_by_a_budget_still_uncordons_after_its_duration() {
    let world = Arc::new(Mutex::new(World::new(manifest_rules())));
    world.lock().unwrap().pdbs.insert(
        (NS.into(), "consumer-pdb".into()),
        (BTreeMap::from([("app".into(), "consumer".into())]), 3),
    );
    let cluster = cluster_on(world.clone()).await;
    let spec =
        ChaosSpec::parse_flag("at=0s,action=drain-node,target=node/n1,duration=200ms").unwrap();
    let tasks = ChaosTasks::spawn(cluster, vec![spec], pacing(Duration::from_millis(1500)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !world.lock().unwrap().cordoned("n1") {
        assert!(Instant::now() < deadline, "cordoned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    {
        let w = world.lock().unwrap();
        assert!(
            !w.cordoned("n1"),
            "uncordoned after 200 ms while the drain still retries"
        );
        assert!(w.pod(NS, "consumer-c1").is_some(), "the budget keeps c1");
        assert!(
            w.pod("kube-system", "coredns-1").is_none(),
            "the rest of the node drained"
        );
    }
    let begun = Instant::now();
    let faults = tasks.finish().await;
    assert!(begun.elapsed() < Duration::from_secs(3));
    let f = &faults[0];
    assert_eq!(f.status, FaultStatus::Blocked, "{f:#?}");
    assert!(f.retries >= 2, "{f:#?}");
    assert!(
        f.detail.as_deref().unwrap().contains("consumer-c1"),
        "{f:#?}"
    );
    assert!(
        f.returned
            .is_some_and(|t| t.duration_since(f.at) >= Duration::from_millis(200))
    );
}

fn denied(faults: &[ClusterFault]) -> Vec<String> {
    faults
        .iter()
        .filter(|f| {
            f.status == FaultStatus::Denied
                || f.undo_error
                    .as_deref()
                    .is_some_and(|e| e.contains("forbidden"))
        })
        .map(|f| format!("{}: {:?} {:?}", f.spec.action, f.detail, f.undo_error))
        .collect()
}

#[tokio::test]
async fn the_manifest_rules_suffice_and_each_chaos_rule_is_needed() {
    // Every RBAC file bound, as in the development overlay: every action is carried out and undone.
    let all = every_action(manifest_rules(), &[&NAMESPACED[..], &ON_NODES[..]].concat()).await;
    assert_eq!(all.len(), NAMESPACED.len() + ON_NODES.len());
    for f in &all {
        assert_eq!(f.status, FaultStatus::Done, "{f:#?}");
        assert!(f.undo_error.is_none(), "{f:#?}");
    }
    // Each chaos file, beside the monitor Role alone, suffices for its own faults (production ships the namespaced
    // Role without node-chaos), and each of its grants is needed by one of them.
    for (file, specs) in [
        (CHAOS_ROLE, &NAMESPACED[..]),
        (NODE_CHAOS_ROLE, &ON_NODES[..]),
    ] {
        let base = rules_of(&[MONITOR_ROLE, file]);
        for f in &every_action(base.clone(), specs).await {
            assert_eq!(f.status, FaultStatus::Done, "{file}: {f:#?}");
            assert!(f.undo_error.is_none(), "{file}: {f:#?}");
        }
        let grants: Vec<(String, String, String)> = rules_of(&[file])
            .into_iter()
            .flat_map(|r| {
                let resources = r.resources.clone();
                r.verbs.into_iter().flat_map(move |v| {
                    let source = r.source.clone();
                    resources
                        .clone()
                        .into_iter()
                        .map(move |res| (source.clone(), res, v.clone()))
                })
            })
            .collect();
        assert!(grants.len() >= 4, "{file}: {grants:?}");
        for (source, resource, verb) in grants {
            let faults = every_action(
                rules_without(base.clone(), &source, &resource, &verb),
                specs,
            )
            .await;
            assert!(
                !denied(&faults).is_empty(),
                "without {verb} {resource} ({source}) every action of {file} still worked: the rule is not needed"
            );
        }
    }
}
