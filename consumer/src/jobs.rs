//! The job store: every async or sustained job's record (state, timings, result), kept while it is active and for
//! `--job-retention` after it finishes (at most `--max-retained-jobs` finished ones, oldest forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::validate::Mode;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }

    /// The `outcome` label value for a finished state.
    pub fn outcome(self) -> &'static str {
        match self {
            JobState::Done => crate::metrics::label::DONE,
            JobState::Failed => crate::metrics::label::FAILED,
            _ => crate::metrics::label::CANCELLED,
        }
    }
}

/// A job as `GET /jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: Uuid,
    /// `cpu`, `memory`, `io` or `sustained`.
    pub kind: String,
    pub mode: Mode,
    pub state: JobState,
    /// The validated request, defaults filled in.
    #[schema(value_type = Object)]
    pub request: Value,
    /// RFC 3339 timestamps.
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Seconds spent waiting for an executor slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_seconds: Option<f64>,
    /// Seconds of work (so far, while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_seconds: Option<f64>,
    /// What the work measured (same shape as the sync response).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pod that ran the job.
    pub served_by: String,
}

#[derive(Debug)]
struct JobRecord {
    view: JobView,
    started: Option<Instant>,
    finished: Option<Instant>,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<Uuid, JobRecord>,
    finished_order: VecDeque<Uuid>,
}

/// All jobs of this replica.
#[derive(Debug)]
pub struct JobStore {
    inner: Mutex<Inner>,
    retention: Duration,
    max_retained: usize,
    served_by: String,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl JobStore {
    pub fn new(retention: Duration, max_retained: usize, served_by: String) -> JobStore {
        JobStore {
            inner: Mutex::new(Inner::default()),
            retention,
            max_retained,
            served_by,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a new job in state `state` and returns its id.
    pub fn create(
        &self,
        kind: &str,
        mode: Mode,
        state: JobState,
        request: Value,
        cancel: CancellationToken,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let now = SystemTime::now();
        let view = JobView {
            job_id: id,
            kind: kind.to_owned(),
            mode,
            state,
            request,
            created_at: rfc3339(now),
            started_at: (state == JobState::Running).then(|| rfc3339(now)),
            finished_at: None,
            queue_wait_seconds: None,
            run_seconds: None,
            result: None,
            error: None,
            served_by: self.served_by.clone(),
        };
        let started = (state == JobState::Running).then(Instant::now);
        let mut inner = self.lock();
        self.prune(&mut inner);
        inner.jobs.insert(
            id,
            JobRecord {
                view,
                started,
                finished: None,
                cancel,
            },
        );
        id
    }

    /// Marks a queued job running.
    pub fn start(&self, id: Uuid, queue_wait: Duration) {
        let mut inner = self.lock();
        if let Some(record) = inner.jobs.get_mut(&id) {
            record.view.state = JobState::Running;
            record.view.started_at = Some(rfc3339(SystemTime::now()));
            record.view.queue_wait_seconds = Some(queue_wait.as_secs_f64());
            record.started = Some(Instant::now());
        }
    }

    /// Records the end of a job.
    pub fn finish(&self, id: Uuid, state: JobState, result: Option<Value>, error: Option<String>) {
        let mut inner = self.lock();
        let Some(record) = inner.jobs.get_mut(&id) else {
            return;
        };
        if record.view.state.is_finished() {
            return;
        }
        record.view.state = state;
        record.view.finished_at = Some(rfc3339(SystemTime::now()));
        record.view.run_seconds = record
            .started
            .map(|started| started.elapsed().as_secs_f64());
        record.view.result = result;
        record.view.error = error;
        record.finished = Some(Instant::now());
        inner.finished_order.push_back(id);
        self.prune(&mut inner);
    }

    fn view_of(record: &JobRecord) -> JobView {
        let mut view = record.view.clone();
        if !view.state.is_finished() {
            view.run_seconds = record
                .started
                .map(|started| started.elapsed().as_secs_f64());
        }
        view
    }

    pub fn get(&self, id: Uuid) -> Option<JobView> {
        let mut inner = self.lock();
        self.prune(&mut inner);
        inner.jobs.get(&id).map(Self::view_of)
    }

    /// Jobs of one kind (all when `None`), oldest first.
    pub fn list(&self, kind: Option<&str>) -> Vec<JobView> {
        let mut inner = self.lock();
        self.prune(&mut inner);
        let mut views: Vec<JobView> = inner
            .jobs
            .values()
            .filter(|record| kind.is_none_or(|kind| record.view.kind == kind))
            .map(Self::view_of)
            .collect();
        views.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        views
    }

    /// Cancels one job if it is still active; returns its view (None if unknown).
    pub fn cancel(&self, id: Uuid) -> Option<JobView> {
        let inner = self.lock();
        let record = inner.jobs.get(&id)?;
        if !record.view.state.is_finished() {
            record.cancel.cancel();
        }
        Some(Self::view_of(record))
    }

    /// Cancels every active job of `kind`; returns their ids.
    pub fn cancel_kind(&self, kind: &str) -> Vec<Uuid> {
        let inner = self.lock();
        inner
            .jobs
            .values()
            .filter(|record| record.view.kind == kind && !record.view.state.is_finished())
            .map(|record| {
                record.cancel.cancel();
                record.view.job_id
            })
            .collect()
    }

    /// Kind of a job, if known.
    pub fn kind_of(&self, id: Uuid) -> Option<String> {
        self.lock()
            .jobs
            .get(&id)
            .map(|record| record.view.kind.clone())
    }

    /// Forgets finished jobs past retention, and the oldest finished ones beyond the count bound.
    fn prune(&self, inner: &mut Inner) {
        while let Some(oldest) = inner.finished_order.front().copied() {
            let expired = inner
                .jobs
                .get(&oldest)
                .and_then(|record| record.finished)
                .is_none_or(|finished| finished.elapsed() >= self.retention);
            if expired || inner.finished_order.len() > self.max_retained {
                inner.finished_order.pop_front();
                inner.jobs.remove(&oldest);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_move_through_states_and_are_forgotten_beyond_the_bound() {
        let store = JobStore::new(Duration::from_secs(600), 2, "pod".into());
        let ids: Vec<Uuid> = (0..3)
            .map(|_| {
                store.create(
                    "io",
                    Mode::Async,
                    JobState::Queued,
                    json!({}),
                    CancellationToken::new(),
                )
            })
            .collect();
        store.start(ids[0], Duration::from_millis(5));
        assert_eq!(store.get(ids[0]).unwrap().state, JobState::Running);
        for id in &ids {
            store.finish(*id, JobState::Done, Some(json!({"ok": true})), None);
        }
        assert!(
            store.get(ids[0]).is_none(),
            "oldest finished job forgotten beyond max_retained"
        );
        assert_eq!(store.get(ids[2]).unwrap().state, JobState::Done);
        assert_eq!(store.list(Some("io")).len(), 2);
    }

    #[test]
    fn finished_jobs_expire_after_retention() {
        let store = JobStore::new(Duration::ZERO, 100, "pod".into());
        let id = store.create(
            "cpu",
            Mode::Async,
            JobState::Queued,
            json!({}),
            CancellationToken::new(),
        );
        assert!(store.get(id).is_some(), "active jobs are never pruned");
        store.finish(id, JobState::Cancelled, None, Some("stopped".into()));
        assert!(store.get(id).is_none());
    }
}
