//! The lab's stand-in for a Deployment: a pool of consumer processes on 127.0.0.1. A new replica takes
//! traffic (joins the [`TargetSet`], as an Endpoint joins a Service) only once `/ready` answers 200; a
//! removed one leaves the set first, then gets SIGTERM and drains, as a pod does. [`faults`] breaks replicas on
//! purpose (the chaos faults: kill, terminate, freeze).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use contract::listening::kind;
use contract::routes;
use procs::{Child, StopOutcome};

use crate::process;

mod faults;
pub use faults::{FreezeOutcome, Hit, PROBE_FAILURES, PROBE_PERIOD};
use load::client::SimpleClient;
use load::targets::TargetSet;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Process starting or not ready yet.
    Starting,
    /// `/ready` answered 200: takes traffic.
    Ready,
    /// Removed from the targets, SIGTERM sent, draining.
    Draining,
    /// Was ready; its readiness probe failed (a frozen process): out of the targets until it answers again.
    Unready,
}

#[derive(Debug)]
struct Entry {
    id: u32,
    name: String,
    url: Option<String>,
    state: ReplicaState,
    /// Scale-in chose this replica while it was still starting: stop it as soon as it is up.
    stop_requested: bool,
    process: Option<Child>,
    /// Its process was killed: this entry holds the pod's place (counted, not ready) until the restart back-off
    /// ends and a replacement starts.
    restarting: bool,
    /// SIGSTOPped by a freeze fault (SIGCONT before a drain, so it can drain).
    frozen: bool,
}

#[derive(Debug, Default)]
struct State {
    next_id: u32,
    entries: Vec<Entry>,
    /// Every pid ever spawned, for the clean-up check.
    pids: Vec<u32>,
    /// Start failures and unexpected exits, for the live view and the report.
    problems: Vec<String>,
    /// Replicas that drained cleanly / needed SIGKILL.
    drained: u32,
    killed: u32,
    /// The Deployment's `spec.replicas`: the count the last `scale_to` asked for.
    spec: u32,
    /// Replicas that died on their own and were replaced.
    restarts: u32,
    /// Replicas a chaos `kill` SIGKILLed.
    killed_by_chaos: u32,
    /// Set by [`ReplicaPool::shutdown`]: no replica is started after it.
    closed: bool,
    /// Every replica's life, kept after it is gone (the scaling report reads them).
    lives: Vec<Life>,
}

/// One replica's life: when it was started, passed `/ready` (joined the Service) and left the Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub id: u32,
    /// Its `x-served-by` name.
    pub name: String,
    pub started: Instant,
    pub ready: Option<Instant>,
    pub stopped: Option<Instant>,
}

impl State {
    /// Mark a replica's life over (the first time only): it left the Service.
    fn stopped(&mut self, id: u32) {
        if let Some(life) = self
            .lives
            .iter_mut()
            .find(|l| l.id == id && l.stopped.is_none())
        {
            life.stopped = Some(Instant::now());
        }
    }
}

/// A point-in-time view of the pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSnapshot {
    /// Replicas that exist and are not being removed (the Deployment's replica count).
    pub current: u32,
    pub ready: u32,
    pub draining: u32,
    /// URLs of ready replicas, in start order.
    pub ready_urls: Vec<String>,
    pub problems: Vec<String>,
}

/// How to start a consumer replica.
#[derive(Debug, Clone)]
pub struct ReplicaTemplate {
    pub binary: PathBuf,
    pub extra_args: Vec<String>,
    /// SIGTERM grace before SIGKILL (the pod's terminationGracePeriodSeconds).
    pub grace: Duration,
    /// Bound on start + readiness.
    pub start_timeout: Duration,
    /// Every replica is tracked here from spawn to reap.
    pub children: procs::Registry,
}

/// The consumer replicas.
#[derive(Debug, Clone)]
pub struct ReplicaPool {
    state: Arc<Mutex<State>>,
    targets: TargetSet,
    template: ReplicaTemplate,
    tasks: TaskTracker,
    /// Cancelled by [`ReplicaPool::shutdown`]: a pending restart back-off ends at once.
    closing: tokio_util::sync::CancellationToken,
}

impl ReplicaPool {
    pub fn new(template: ReplicaTemplate, targets: TargetSet) -> ReplicaPool {
        ReplicaPool {
            state: Arc::new(Mutex::new(State::default())),
            targets,
            template,
            tasks: TaskTracker::new(),
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("replica pool lock")
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let state = self.lock();
        let live = |e: &&Entry| e.state != ReplicaState::Draining && !e.stop_requested;
        PoolSnapshot {
            current: state.entries.iter().filter(live).count() as u32,
            ready: state
                .entries
                .iter()
                .filter(live)
                .filter(|e| e.state == ReplicaState::Ready)
                .count() as u32,
            draining: state
                .entries
                .iter()
                .filter(|e| e.state == ReplicaState::Draining || e.stop_requested)
                .count() as u32,
            ready_urls: state
                .entries
                .iter()
                .filter(live)
                .filter(|e| e.state == ReplicaState::Ready)
                .filter_map(|e| e.url.clone())
                .collect(),
            problems: state.problems.clone(),
        }
    }

    /// Every pid this pool spawned.
    pub fn pids(&self) -> Vec<u32> {
        self.lock().pids.clone()
    }

    /// (drained cleanly, needed SIGKILL).
    pub fn stop_counts(&self) -> (u32, u32) {
        let s = self.lock();
        (s.drained, s.killed)
    }

    /// Start or stop replicas so that `desired` exist. Scale-in picks replicas that are not ready yet
    /// first, then the newest.
    pub fn scale_to(&self, mut desired: u32) {
        let mut state = self.lock();
        if state.closed {
            // A decision that raced the shutdown: nothing may start once the pool is closing.
            desired = 0;
        }
        state.spec = desired;
        let live: Vec<usize> = state
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state != ReplicaState::Draining && !e.stop_requested)
            .map(|(i, _)| i)
            .collect();
        let current = live.len() as u32;
        if desired > current {
            for _ in current..desired {
                state.next_id += 1;
                let id = state.next_id;
                let name = format!("consumer-{id}");
                state.lives.push(Life {
                    id,
                    name: name.clone(),
                    started: Instant::now(),
                    ready: None,
                    stopped: None,
                });
                state.entries.push(Entry {
                    id,
                    name: name.clone(),
                    url: None,
                    state: ReplicaState::Starting,
                    stop_requested: false,
                    process: None,
                    restarting: false,
                    frozen: false,
                });
                let pool = self.clone();
                self.tasks
                    .spawn(async move { pool.start_replica(id, name).await });
            }
        } else if desired < current {
            let mut victims: Vec<usize> = live.clone();
            // Not-ready first, then newest first.
            victims.sort_by_key(|&i| {
                let e = &state.entries[i];
                (e.state == ReplicaState::Ready, std::cmp::Reverse(e.id))
            });
            for &i in victims.iter().take((current - desired) as usize) {
                let id = state.entries[i].id;
                state.stopped(id);
                let entry = &mut state.entries[i];
                if entry.frozen
                    && let Some(process) = &entry.process
                {
                    process.signal(crate::process::SIGCONT);
                    entry.frozen = false;
                }
                if entry.state == ReplicaState::Starting {
                    entry.stop_requested = true;
                    if let Some(url) = &entry.url {
                        self.targets.remove(url);
                    }
                    continue;
                }
                entry.state = ReplicaState::Draining;
                if let Some(url) = &entry.url {
                    // Leave the Service first, so no new request reaches a terminating replica.
                    self.targets.remove(url);
                }
                if let Some(process) = entry.process.take() {
                    let pool = self.clone();
                    let id = entry.id;
                    self.tasks
                        .spawn(async move { pool.drain(id, process).await });
                }
            }
            // A killed replica's place needs no stopping: nothing runs in it.
            state
                .entries
                .retain(|e| !(e.restarting && e.stop_requested));
        }
    }

    async fn start_replica(&self, id: u32, name: String) {
        let mut args = vec![
            "--host".to_string(),
            "127.0.0.1".to_string(),
            "--port".to_string(),
            "0".to_string(),
            "--pod-name".to_string(),
            name.clone(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        args.extend(self.template.extra_args.iter().cloned());
        let started = process::child(
            &name,
            &self.template.binary,
            &args,
            &[kind::HTTP],
            self.template.start_timeout,
            &self.template.children,
        )
        .start()
        .await;
        let process = match started {
            Ok(p) => p,
            Err(e) => {
                let mut state = self.lock();
                state.problems.push(format!("{name}: {e}"));
                state.stopped(id);
                state.entries.retain(|e| e.id != id);
                return;
            }
        };
        let Some(addr) = process.addr(kind::HTTP) else {
            let mut state = self.lock();
            state.stopped(id);
            state.entries.retain(|e| e.id != id);
            return;
        };
        let url = format!("http://{addr}");
        {
            let mut state = self.lock();
            state.pids.push(process.pid());
            if let Some(entry) = state.entries.iter_mut().find(|e| e.id == id) {
                entry.url = Some(url.clone());
            }
        }
        // Readiness: poll /ready until 200 (the readinessProbe), bounded by the start timeout.
        let client = SimpleClient::new(Duration::from_secs(2));
        let ready_url = format!("{url}{}", routes::READY);
        let deadline = tokio::time::Instant::now() + self.template.start_timeout;
        let mut ready = false;
        while tokio::time::Instant::now() < deadline {
            if self.stop_requested(id) {
                break;
            }
            if let Ok((200, _)) = client.get(&ready_url).await {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut process = Some(process);
        {
            let mut state = self.lock();
            let stop = state
                .entries
                .iter()
                .find(|e| e.id == id)
                .is_none_or(|e| e.stop_requested);
            if !ready && !stop {
                state
                    .problems
                    .push(format!("{name}: /ready did not answer 200 in time"));
            }
            if ready
                && !stop
                && let Some(entry) = state.entries.iter_mut().find(|e| e.id == id)
            {
                entry.state = ReplicaState::Ready;
                entry.process = process.take();
                if let Some(life) = state.lives.iter_mut().find(|l| l.id == id) {
                    life.ready = Some(Instant::now());
                }
                // Join the Service only now.
                let _ = self.targets.add(&url);
            } else if let Some(entry) = state.entries.iter_mut().find(|e| e.id == id) {
                entry.state = ReplicaState::Draining;
                state.stopped(id);
            }
        }
        if let Some(process) = process {
            self.drain(id, process).await;
        }
    }

    fn stop_requested(&self, id: u32) -> bool {
        self.lock()
            .entries
            .iter()
            .find(|e| e.id == id)
            .is_none_or(|e| e.stop_requested)
    }

    async fn drain(&self, id: u32, mut process: Child) {
        let name = process.name().to_string();
        let outcome = process.stop(self.template.grace).await;
        let mut state = self.lock();
        match outcome {
            StopOutcome::Drained(_) => state.drained += 1,
            StopOutcome::Killed => {
                state.killed += 1;
                state.problems.push(format!(
                    "{name}: did not drain within the grace period, killed"
                ));
            }
            StopOutcome::AlreadyExited(code) => {
                state
                    .problems
                    .push(format!("{name}: had already exited (code {code:?})"));
            }
        }
        state.entries.retain(|e| e.id != id);
    }

    /// Every replica's life so far, in start order.
    pub fn lives(&self) -> Vec<Life> {
        self.lock().lives.clone()
    }

    /// Replicas that died on their own and were replaced so far.
    pub fn restarts(&self) -> u32 {
        self.lock().restarts
    }

    /// Replicas a chaos `kill` SIGKILLed so far.
    pub fn killed_by_chaos(&self) -> u32 {
        self.lock().killed_by_chaos
    }

    /// Detect replicas that died on their own: drop them from the targets and the pool, as a crashed pod's
    /// endpoint leaves its Service, and start replacements, as the ReplicaSet keeps `spec.replicas`.
    /// Returns what happened to each, with its last output, for the problems list.
    pub async fn reap_dead(&self) -> Vec<String> {
        let dead = self.remove_dead();
        if dead.is_empty() {
            return Vec::new();
        }
        let spec = {
            let mut state = self.lock();
            state.restarts += dead.len() as u32;
            state.spec
        };
        self.scale_to(spec);
        let mut messages = Vec::new();
        for (name, mut process) in dead {
            // The exit is known; wait for the end of its output too, so the message holds its last words.
            let status = process.wait(Duration::from_secs(1)).await;
            let status = status.map_or_else(|| "exited".to_string(), |s| s.to_string());
            messages.push(format!(
                "{name}: exited unexpectedly ({status}), replaced; last output:\n{}",
                process.last_output(15)
            ));
        }
        self.lock().problems.extend(messages.iter().cloned());
        messages
    }

    /// Takes the replicas whose process has exited out of the pool and the targets.
    fn remove_dead(&self) -> Vec<(String, Child)> {
        let mut state = self.lock();
        let mut dead = Vec::new();
        for entry in state.entries.iter_mut() {
            let exited = entry
                .process
                .as_mut()
                .is_some_and(|p| p.try_exited().is_some());
            if exited && let Some(process) = entry.process.take() {
                if let Some(url) = &entry.url {
                    self.targets.remove(url);
                }
                dead.push((entry.id, entry.name.clone(), process));
            }
        }
        for (id, _, _) in &dead {
            state.stopped(*id);
        }
        let ids: Vec<u32> = dead.iter().map(|(id, _, _)| *id).collect();
        state.entries.retain(|e| !ids.contains(&e.id));
        dead.into_iter()
            .map(|(_, name, process)| (name, process))
            .collect()
    }

    /// Stop every replica (SIGTERM, grace, SIGKILL) and wait for all start/drain tasks.
    pub async fn shutdown(&self) {
        self.lock().closed = true;
        self.closing.cancel();
        self.scale_to(0);
        self.tasks.close();
        self.tasks.wait().await;
        // Anything left (should be nothing) is killed by kill_on_drop here.
        self.lock().entries.clear();
    }
}
