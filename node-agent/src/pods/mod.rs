//! The pods bound to this node: a watch on `spec.nodeName`, and a worker per pod UID fed the latest object (or
//! `None` once it is gone). The watch resumes by itself when the API server restarts; a re-list after a gap tells
//! the workers of pods deleted meanwhile.

pub mod atomic;
pub mod container;
pub mod context;
pub mod env;
pub mod objects;
pub mod probe;
pub mod runner;
pub mod sandbox;
mod setup;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use context::Agent;

struct Worker {
    latest: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs every pod bound to the node until `shutdown`, then waits for each to stop.
pub async fn run(agent: Arc<Agent>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default()
        .fields(&format!("spec.nodeName={}", agent.config.args.node_name));
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut relisted: Option<BTreeSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.cancelled() => break,
        };
        workers.retain(|_, w| !w.task.is_finished());
        match event {
            None => break,
            Some(Err(e)) => tracing::warn!("watching the node's pods: {e} (resuming)"),
            Some(Ok(Event::Init)) => relisted = Some(BTreeSet::new()),
            Some(Ok(Event::InitApply(pod))) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                feed(&agent, &mut workers, pod, &shutdown);
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = relisted.take() {
                    for (uid, worker) in &workers {
                        if !seen.contains(uid) {
                            worker.latest.send_replace(None);
                        }
                    }
                }
            }
            Some(Ok(Event::Apply(pod))) => feed(&agent, &mut workers, pod, &shutdown),
            Some(Ok(Event::Delete(pod))) => {
                if let Some(worker) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                    worker.latest.send_replace(None);
                }
            }
        }
    }
    for (_, worker) in workers {
        if let Err(e) = worker.task.await {
            tracing::error!("a pod worker failed: {e}");
        }
    }
}

fn feed(
    agent: &Arc<Agent>,
    workers: &mut BTreeMap<String, Worker>,
    pod: Pod,
    shutdown: &CancellationToken,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    match workers.get(&uid) {
        Some(worker) => {
            worker.latest.send_replace(Some(pod));
        }
        None => {
            let (latest, rx) = watch::channel(Some(pod));
            let task = tokio::spawn(worker::run(agent.clone(), rx, shutdown.clone()));
            workers.insert(uid, Worker { latest, task });
        }
    }
}
