//! Faults on purpose, for the chaos runs: kill a replica (a crash: its place waits out a restart back-off), terminate
//! one (an eviction: drained and replaced at once), freeze one (SIGSTOP: it leaves the targets when its readiness probe
//! fails and returns after SIGCONT). Each returns whom it hit and the instant of the fault.

use std::time::{Duration, Instant};

use contract::listening::kind;
use contract::routes;
use load::client::SimpleClient;
use procs::Child;

use super::{Entry, ReplicaPool, ReplicaState, State};

/// The readiness probe of a frozen replica: period and timeout.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// Failed probes in a row before the replica is unready (the probe's failureThreshold).
pub const PROBE_FAILURES: u32 = 2;

/// The replica a fault hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: u32,
    /// Its `x-served-by` name.
    pub name: String,
    pub pid: u32,
    /// Its base URL in the targets.
    pub url: Option<String>,
}

impl Hit {
    fn of(entry: &Entry, process: &Child) -> Hit {
        Hit {
            id: entry.id,
            name: entry.name.clone(),
            pid: process.pid(),
            url: entry.url.clone().or_else(|| {
                process
                    .addr(kind::HTTP)
                    .map(|addr| format!("http://{addr}"))
            }),
        }
    }
}

/// What followed a freeze.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FreezeOutcome {
    /// Its readiness failed: out of the targets.
    pub left: Option<Instant>,
    /// SIGCONT sent.
    pub continued: Option<Instant>,
    /// `/ready` answered again: back in the targets.
    pub returned: Option<Instant>,
}

impl ReplicaPool {
    /// The replica a fault hits: `consumer-N` when named, else the oldest ready one. Only a ready replica (one that
    /// serves) can be hit.
    fn pick(state: &State, which: Option<u32>) -> Result<usize, String> {
        let ready =
            |e: &Entry| e.state == ReplicaState::Ready && !e.stop_requested && e.process.is_some();
        match which {
            Some(n) => state
                .entries
                .iter()
                .position(|e| e.id == n && ready(e))
                .ok_or_else(|| format!("consumer-{n} is not a ready replica now")),
            None => state
                .entries
                .iter()
                .position(ready)
                .ok_or_else(|| "no ready replica".to_string()),
        }
    }

    /// Chaos `kill`: SIGKILL one replica, as a crash. Its endpoint leaves the targets at once (where a kubelet notices
    /// a dead container within about a second), its place stays counted but not ready (the pod restarting), and a
    /// replacement starts after `backoff` (the container's restart back-off). The process is stopped (SIGSTOP) 50 ms
    /// before the SIGKILL so that the requests open on it at the returned instant are exactly those that fail: a
    /// response it had already written has reached the client by then, and a stopped process writes no more.
    pub async fn kill(
        &self,
        which: Option<u32>,
        backoff: Duration,
    ) -> Result<(Hit, Instant), String> {
        let (hit, mut process) = {
            let mut state = self.lock();
            let i = Self::pick(&state, which)?;
            let id = state.entries[i].id;
            state.stopped(id);
            let entry = &mut state.entries[i];
            let process = entry.process.take().expect("picked with a process");
            if let Some(url) = entry.url.take() {
                self.targets.remove(&url);
            }
            process.signal(crate::process::SIGSTOP);
            entry.state = ReplicaState::Starting;
            entry.restarting = true;
            entry.frozen = false;
            let hit = Hit::of(entry, &process);
            (hit, process)
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let at = Instant::now();
        process.kill_and_reap().await;
        self.lock().killed_by_chaos += 1;
        let pool = self.clone();
        let id = hit.id;
        let closing = self.closing.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = closing.cancelled() => return,
            }
            let spec = {
                let mut state = pool.lock();
                let Some(pos) = state.entries.iter().position(|e| e.id == id) else {
                    return;
                };
                state.entries.remove(pos);
                state.restarts += 1;
                state.spec
            };
            pool.scale_to(spec);
        });
        Ok((hit, at))
    }

    /// Chaos `terminate`: an eviction. The replica leaves the targets, gets SIGTERM and drains (SIGKILL after the
    /// grace), and a replacement starts at once, as the ReplicaSet replaces a deleted pod.
    pub fn terminate(&self, which: Option<u32>) -> Result<(Hit, Instant), String> {
        let (hit, spec) = {
            let mut state = self.lock();
            let i = Self::pick(&state, which)?;
            let id = state.entries[i].id;
            state.stopped(id);
            let entry = &mut state.entries[i];
            entry.state = ReplicaState::Draining;
            if let Some(url) = &entry.url {
                self.targets.remove(url);
            }
            let process = entry.process.take().expect("picked with a process");
            let hit = Hit::of(entry, &process);
            let pool = self.clone();
            self.tasks
                .spawn(async move { pool.drain(id, process).await });
            (hit, state.spec)
        };
        let at = Instant::now();
        self.scale_to(spec);
        Ok((hit, at))
    }

    /// Chaos `freeze`, first half: SIGSTOP one replica. It stays in the targets until its readiness probe fails
    /// ([`ReplicaPool::watch_frozen`]), as an endpoint does.
    pub fn freeze(&self, which: Option<u32>) -> Result<(Hit, Instant), String> {
        let mut state = self.lock();
        let i = Self::pick(&state, which)?;
        let entry = &mut state.entries[i];
        let process = entry.process.as_ref().expect("picked with a process");
        process.signal(crate::process::SIGSTOP);
        entry.frozen = true;
        Ok((Hit::of(entry, process), Instant::now()))
    }

    /// Chaos `freeze`, second half: probe the frozen replica's `/ready` as a readinessProbe does (every
    /// [`PROBE_PERIOD`], timeout [`PROBE_PERIOD`], [`PROBE_FAILURES`] failures in a row make it unready) and take it out
    /// of the targets when it fails; SIGCONT it `duration` after `frozen_at`; put it back once `/ready` answers 200.
    pub async fn watch_frozen(
        &self,
        hit: &Hit,
        frozen_at: Instant,
        duration: Duration,
    ) -> FreezeOutcome {
        let mut outcome = FreezeOutcome::default();
        let Some(url) = hit.url.clone() else {
            return outcome;
        };
        let client = SimpleClient::new(PROBE_PERIOD);
        let ready_url = format!("{url}{}", routes::READY);
        let thaw_at = frozen_at + duration;
        let give_up = thaw_at + self.template.start_timeout;
        let mut failures = 0;
        let mut thawed = false;
        while Instant::now() < give_up {
            if !thawed && Instant::now() >= thaw_at {
                thawed = true;
                let mut state = self.lock();
                if let Some(e) = state.entries.iter_mut().find(|e| e.id == hit.id) {
                    if let Some(p) = &e.process {
                        p.signal(crate::process::SIGCONT);
                    }
                    e.frozen = false;
                }
                outcome.continued = Some(Instant::now());
            }
            let probe_start = Instant::now();
            let ok = matches!(client.get(&ready_url).await, Ok((200, _)));
            {
                let mut state = self.lock();
                let Some(entry) = state.entries.iter_mut().find(|e| e.id == hit.id) else {
                    return outcome; // scaled in meanwhile
                };
                if ok {
                    failures = 0;
                    if entry.state == ReplicaState::Unready {
                        entry.state = ReplicaState::Ready;
                        let _ = self.targets.add(&url);
                        outcome.returned = Some(Instant::now());
                    }
                    if thawed {
                        return outcome;
                    }
                } else {
                    failures += 1;
                    if failures >= PROBE_FAILURES && entry.state == ReplicaState::Ready {
                        entry.state = ReplicaState::Unready;
                        self.targets.remove(&url);
                        outcome.left = Some(Instant::now());
                    }
                }
            }
            let next = probe_start + PROBE_PERIOD;
            let next = if thawed { next } else { next.min(thaw_at) };
            tokio::time::sleep_until(next.into()).await;
        }
        outcome
    }
}
