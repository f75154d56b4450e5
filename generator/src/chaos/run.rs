//! Firing the cluster faults at their times and undoing them: each fault is a task that waits for its `at` (from the
//! start of the load, already time-scaled), acts, follows what it broke (a replacement pod becoming Ready) and undoes
//! what it must (the partition, the scaler's count, the cordon) after its `duration`, or when the run stops, on every
//! path: the end of the load, an error, a cancel. [`ChaosTasks::finish`] stops the waiting and returns the records.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cluster::{ApiFailure, Cluster, PodInfo};
use super::{ClusterFault, FaultStatus};
use chaos_spec::{ChaosAction, ChaosSpec, ChaosTarget};

/// How the faults are paced.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// The start of the load: every `at` counts from here.
    pub start: Instant,
    /// The end of the load: evictions blocked by a budget are retried until `min(evict_retry, end)`.
    pub end: Instant,
    /// The longest an eviction is retried (time-scaled 30 s).
    pub evict_retry: Duration,
    /// How often pods are polled for the replacement.
    pub poll: Duration,
}

/// The running faults.
pub struct ChaosTasks {
    stop: CancellationToken,
    tasks: JoinSet<ClusterFault>,
}

impl ChaosTasks {
    /// Start one task per fault.
    pub fn spawn(cluster: Cluster, faults: Vec<ChaosSpec>, pacing: Pacing) -> ChaosTasks {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for spec in faults {
            let (cluster, stop) = (cluster.clone(), stop.clone());
            tasks.spawn(async move { one(cluster, spec, pacing, stop).await });
        }
        ChaosTasks { stop, tasks }
    }

    /// Stop waiting (faults not yet due are reported as not reached), undo what is still in force, and return
    /// every fault's record, in time order.
    pub async fn finish(mut self) -> Vec<ClusterFault> {
        self.stop.cancel();
        let mut out = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok(f) => out.push(f),
                Err(e) => eprintln!("generator run: a chaos task failed: {e}"),
            }
        }
        out.sort_by_key(|f| f.at);
        out
    }
}

/// Sleep until `t`; false when stopped first.
async fn until(t: Instant, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(t)) => true,
        _ = stop.cancelled() => false,
    }
}

fn failed(fault: &mut ClusterFault, e: ApiFailure) {
    fault.status = match e {
        ApiFailure::Denied(_) => FaultStatus::Denied,
        ApiFailure::NotFound(_) => FaultStatus::NotFound,
        ApiFailure::TooManyRequests(_) => FaultStatus::Blocked,
        ApiFailure::Other(_) => FaultStatus::Failed,
    };
    fault.detail = Some(match e {
        ApiFailure::TooManyRequests(m) => format!(
            "blocked by a disruption budget after {} retries: {m}",
            fault.retries
        ),
        other => other.to_string(),
    });
}

async fn one(
    cluster: Cluster,
    spec: ChaosSpec,
    pacing: Pacing,
    stop: CancellationToken,
) -> ClusterFault {
    let mut fault = ClusterFault::new(spec.clone(), pacing.start + spec.at);
    if !until(fault.at, &stop).await {
        fault.status = FaultStatus::NotReached;
        fault.detail = Some("the run ended before it was due".into());
        return fault;
    }
    fault.at = Instant::now();
    if let Err(e) = act(&cluster, &mut fault, pacing, &stop).await {
        failed(&mut fault, e);
    }
    fault
}

/// Resolve the target pod.
async fn target_pod(
    cluster: &Cluster,
    target: &ChaosTarget,
    selector: &str,
) -> Result<PodInfo, ApiFailure> {
    match target {
        ChaosTarget::PodNamed(name) => cluster.pod(name).await,
        _ => cluster.oldest_ready(selector).await,
    }
}

async fn act(
    cluster: &Cluster,
    fault: &mut ClusterFault,
    pacing: Pacing,
    stop: &CancellationToken,
) -> Result<(), ApiFailure> {
    let spec = fault.spec.clone();
    let undo_at = spec.duration.map(|d| fault.at + d);
    let deadline = (fault.at + pacing.evict_retry).min(pacing.end.max(fault.at));
    if spec.action == ChaosAction::ScalerToZero {
        let before = cluster.scale_scaler(0).await?;
        fault.hit = Some(format!(
            "deployment/{} ({before} -> 0)",
            cluster.config.scaler
        ));
        fault.status = FaultStatus::Done;
        wait_undo(undo_at, stop).await;
        match cluster.scale_scaler(before).await {
            Ok(_) => fault.returned = Some(Instant::now()),
            Err(e) => fault.undo_error = Some(format!("restoring {before} replicas: {e}")),
        }
        return Ok(());
    }
    let selector = cluster.selector().await?;
    let before: BTreeSet<String> = cluster
        .consumer_pods(&selector)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    match spec.action {
        ChaosAction::DeletePod | ChaosAction::EvictPod => {
            let pod = target_pod(cluster, &spec.target(), &selector).await?;
            fault.hit = Some(pod.describe());
            fault.pod = Some(pod.name.clone());
            if spec.action == ChaosAction::DeletePod {
                cluster.delete_pod(&pod.name).await?;
            } else {
                match cluster
                    .evict(&pod.namespace, &pod.name, deadline, stop)
                    .await
                {
                    Ok(retries) => fault.retries = retries,
                    Err((e, retries)) => {
                        fault.retries = retries;
                        return Err(e);
                    }
                }
            }
            fault.status = FaultStatus::Done;
            fault.replacement = replacement(cluster, &selector, &before, pacing.poll, stop).await;
        }
        ChaosAction::CordonNode | ChaosAction::DrainNode => {
            let node = match spec.target() {
                ChaosTarget::NodeNamed(n) => n,
                _ => target_pod(cluster, &ChaosTarget::Pod, &selector)
                    .await?
                    .node
                    .ok_or_else(|| {
                        ApiFailure::NotFound("the oldest ready pod has no node".into())
                    })?,
            };
            let was_cordoned = cluster.cordon(&node).await?;
            fault.hit = Some(format!("node/{node}"));
            fault.status = FaultStatus::Done;
            let is_drain = spec.action == ChaosAction::DrainNode;
            // The drain (and the wait for a replacement) and the uncordon run side by side: a budget holding the
            // drain back must not hold the node cordoned past its `duration`.
            let mut drained = fault.clone();
            let work = async {
                if !is_drain {
                    return (Ok(()), None);
                }
                let result = drain(cluster, &mut drained, &node, deadline, stop).await;
                let replaced = match result {
                    Ok(()) => replacement(cluster, &selector, &before, pacing.poll, stop).await,
                    Err(_) => None,
                };
                (result, replaced)
            };
            // Uncordoned after `duration`, else at the end of the run; a node cordoned before stays so.
            let undo = async {
                if was_cordoned {
                    return None;
                }
                wait_undo(undo_at, stop).await;
                Some(cluster.uncordon(&node).await.map(|()| Instant::now()))
            };
            let ((result, replaced), undone) = tokio::join!(work, undo);
            if is_drain {
                fault.hit = drained.hit;
                fault.pod = drained.pod;
                fault.retries = drained.retries;
                fault.replacement = replaced;
            }
            match undone {
                Some(Ok(t)) => fault.returned = Some(t),
                Some(Err(e)) => fault.undo_error = Some(format!("uncordon node/{node}: {e}")),
                None => {}
            }
            result?;
        }
        ChaosAction::PartitionPod => {
            let pod = target_pod(cluster, &spec.target(), &selector).await?;
            fault.hit = Some(pod.describe());
            fault.pod = Some(pod.name.clone());
            let policy = match cluster.partition(&pod.name).await {
                Ok(p) => p,
                Err(e) => {
                    // The label may be on: take it off again (no policy to delete).
                    let _ = cluster.unlabel(&pod.name).await;
                    return Err(e);
                }
            };
            fault.left = Some(Instant::now());
            fault.status = FaultStatus::Done;
            fault.detail = Some(format!("networkpolicy/{policy}"));
            wait_undo(undo_at, stop).await;
            match cluster.heal(&pod.name, &policy).await {
                Ok(()) => fault.returned = Some(Instant::now()),
                Err(e) => fault.undo_error = Some(format!("removing networkpolicy/{policy}: {e}")),
            }
        }
        lab => {
            return Err(ApiFailure::Other(
                lab.check_place(chaos_spec::ChaosPlace::Cluster)
                    .err()
                    .unwrap_or_default(),
            ));
        }
    }
    Ok(())
}

/// Wait for the undo time (`None`: the end of the run) or the stop.
async fn wait_undo(at: Option<Instant>, stop: &CancellationToken) {
    match at {
        Some(t) => {
            until(t, stop).await;
        }
        None => stop.cancelled().await,
    }
}

/// Evict every drainable pod of `node` at once (as kubectl drain), each retried on a budget until `deadline`.
async fn drain(
    cluster: &Cluster,
    fault: &mut ClusterFault,
    node: &str,
    deadline: Instant,
    stop: &CancellationToken,
) -> Result<(), ApiFailure> {
    let pods = cluster.drainable(node).await?;
    let results = futures::future::join_all(
        pods.iter()
            .map(|p| cluster.evict(&p.namespace, &p.name, deadline, stop)),
    )
    .await;
    let mut evicted = 0;
    let mut first_error = None;
    let mut problems = Vec::new();
    for (pod, result) in pods.iter().zip(results) {
        match result {
            Ok(retries) => {
                evicted += 1;
                fault.retries += retries;
            }
            Err((e, retries)) => {
                fault.retries += retries;
                problems.push(format!("{}/{}: {e}", pod.namespace, pod.name));
                // A denial says more than a budget: report it first.
                if first_error.is_none() || matches!(e, ApiFailure::Denied(_)) {
                    first_error = Some(e);
                }
            }
        }
    }
    fault.hit = Some(format!(
        "node/{node} ({evicted} of {} pod(s) evicted)",
        pods.len()
    ));
    fault.pod = pods.first().map(|p| p.name.clone());
    match first_error {
        None => Ok(()),
        Some(e) => {
            let summary = problems.join("; ");
            Err(match e {
                ApiFailure::Denied(_) => ApiFailure::Denied(summary),
                ApiFailure::TooManyRequests(_) => ApiFailure::TooManyRequests(summary),
                ApiFailure::NotFound(_) => ApiFailure::NotFound(summary),
                ApiFailure::Other(_) => ApiFailure::Other(summary),
            })
        }
    }
}

/// Poll the consumer's pods until one that was not there before the fault is Ready: the replacement.
async fn replacement(
    cluster: &Cluster,
    selector: &str,
    before: &BTreeSet<String>,
    poll: Duration,
    stop: &CancellationToken,
) -> Option<(String, Instant)> {
    loop {
        if let Ok(pods) = cluster.consumer_pods(selector).await
            && let Some(p) = pods.iter().find(|p| p.ready && !before.contains(&p.name))
        {
            return Some((p.name.clone(), Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => return None,
        }
    }
}
