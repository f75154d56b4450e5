//! Dispatch: sending one request and recording how it ended, and the open model's worker pool that hands each due
//! request to an idle worker (or spawns one under the cap, or drops the request, never delays it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::options::{EngineError, RunOptions};
use crate::client::{ConnCache, PreparedRequest};
use crate::model::{Outcome, ReplicaSnapshot};
use crate::profile::Profile;
use crate::stats::{Recorder, new_histogram};
use crate::targets::TargetSet;

/// One prepared mix entry.
pub(crate) struct Endpoint {
    pub(crate) name: String,
    pub(crate) request: PreparedRequest,
    pub(crate) weight: u32,
}

/// Smooth weighted round-robin (as nginx does): deterministic, and each window of `sum(weights)` picks follows the
/// weights exactly.
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    pub fn new(weights: &[u32]) -> WeightedRoundRobin {
        WeightedRoundRobin {
            weights: weights.iter().map(|w| i64::from(*w)).collect(),
            current: vec![0; weights.len()],
            total: weights.iter().map(|w| i64::from(*w)).sum(),
        }
    }

    pub fn next_index(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

pub(crate) struct Job {
    pub(crate) endpoint: usize,
    pub(crate) scheduled: Instant,
}

/// Counters the scheduler keeps per interval.
pub(crate) struct SchedCounters {
    pub(crate) scheduled: u64,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
    pub(crate) lag: Histogram<u64>,
}

impl SchedCounters {
    pub(crate) fn new() -> SchedCounters {
        SchedCounters {
            scheduled: 0,
            sent: 0,
            dropped: 0,
            lag: new_histogram(),
        }
    }
}

/// Shared between scheduler, workers, collector.
pub(crate) struct Ctx {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) targets: TargetSet,
    pub(crate) recorder: Recorder,
    pub(crate) sched: Mutex<SchedCounters>,
    pub(crate) in_flight: AtomicU64,
    pub(crate) opts: RunOptions,
    pub(crate) start: Instant,
    pub(crate) latest_replicas: Mutex<Option<ReplicaSnapshot>>,
    pub(crate) interrupted: AtomicBool,
    /// Requests started by closed-loop workers since the last interval.
    pub(crate) closed_loop_sent: AtomicU64,
}

impl Ctx {
    pub(crate) async fn run_one(&self, cache: &mut ConnCache, shard: usize, job: Job) {
        let ep = &self.endpoints[job.endpoint];
        cache.sync_with(&self.targets);
        // Taken before the target is chosen: a request picked at or after the instant a target left the set cannot
        // have chosen it (the chaos measurements rely on that order).
        let picked = std::time::Instant::now();
        let Some(target) = self.targets.next() else {
            // No target: nothing to connect to (the lab may have none ready yet).
            self.log(&job, None, None, Some(Outcome::ConnectError));
            self.recorder.record(
                shard,
                job.endpoint,
                Outcome::ConnectError,
                Duration::ZERO,
                None,
                None,
            );
            return;
        };
        let span = self
            .opts
            .tracing
            .as_ref()
            .and_then(|t| t.start(&ep.name, &ep.request, &target, job.scheduled));
        let executed = cache
            .execute(
                &target,
                &ep.request,
                self.opts.timeout,
                span.as_ref().map(|s| s.traceparent()),
            )
            .await;
        let latency = job.scheduled.elapsed();
        if let (Some(t), Some(span)) = (self.opts.tracing.as_ref(), span) {
            t.finish(span, &executed);
        }
        let served_by = executed.served_by.as_ref().and_then(|v| v.to_str().ok());
        if self.opts.request_log.is_some() {
            self.log(
                &job,
                Some((picked, target.clone())),
                served_by.map(str::to_string),
                Some(executed.outcome),
            );
        }
        self.recorder.record(
            shard,
            job.endpoint,
            executed.outcome,
            latency,
            executed.status,
            served_by,
        );
    }
}

impl Ctx {
    /// Append to the request log, when there is one. `outcome` `None`: dropped.
    pub(crate) fn log(
        &self,
        job: &Job,
        picked: Option<(std::time::Instant, Arc<crate::targets::Target>)>,
        served_by: Option<String>,
        outcome: Option<Outcome>,
    ) {
        if let Some(log) = &self.opts.request_log {
            let (picked, target) = picked.map_or((None, None), |(p, t)| (Some(p), Some(t)));
            log.push(super::RequestRecord {
                scheduled: job.scheduled.into_std(),
                picked,
                ended: std::time::Instant::now(),
                target,
                served_by,
                outcome,
                latency: job.scheduled.elapsed(),
            });
        }
    }
}

/// The worker pool of the open model: idle workers wait on their own channel; the scheduler hands a due request to an
/// idle worker, spawns one if the cap allows, or drops the request.
pub(crate) struct Pool {
    pub(crate) idle: Arc<Mutex<Vec<usize>>>,
    pub(crate) senders: Vec<mpsc::Sender<Job>>,
    pub(crate) tasks: JoinSet<()>,
}

impl Pool {
    pub(crate) fn dispatch(&mut self, ctx: &Arc<Ctx>, job: Job) -> Result<(), Job> {
        let idle = self.idle.lock().expect("pool lock").pop();
        if let Some(id) = idle {
            ctx.in_flight.fetch_add(1, Ordering::Relaxed);
            return self.senders[id].try_send(job).map_err(|e| {
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                }
            });
        }
        if self.senders.len() >= ctx.opts.max_in_flight {
            return Err(job);
        }
        let id = self.senders.len();
        let (tx, mut rx) = mpsc::channel::<Job>(1);
        self.senders.push(tx);
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        let idle = self.idle.clone();
        let shard = id % ctx.recorder.shard_count();
        self.tasks.spawn(async move {
            let mut cache = ConnCache::new(ctx.opts.recycle);
            let mut next = Some(job);
            while let Some(job) = match next.take() {
                Some(j) => Some(j),
                None => rx.recv().await,
            } {
                ctx.run_one(&mut cache, shard, job).await;
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                idle.lock().expect("pool lock").push(id);
            }
        });
        Ok(())
    }
}

pub(crate) fn prepare_endpoints(
    profile: &Profile,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Vec<Endpoint>, EngineError> {
    profile
        .requests
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let name = r.display_name();
            let err = |reason: String| EngineError::Request {
                index,
                name: name.clone(),
                reason,
            };
            let method = Method::from_bytes(r.method.as_bytes())
                .map_err(|_| err(format!("bad method {:?}", r.method)))?;
            let body = r.body.as_ref().map(|b| Bytes::from(b.to_string()));
            let request = PreparedRequest::new(method, &r.path, body, headers.to_vec())
                .map_err(|e| err(format!("bad path {:?}: {e}", r.path)))?;
            Ok(Endpoint {
                name: name.clone(),
                request,
                weight: r.weight,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_follows_weights() {
        let mut w = WeightedRoundRobin::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| w.next_index()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }
}
