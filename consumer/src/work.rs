//! Admitting and running load work, free of HTTP: a [`Work`] item goes to an executor slot now (sync) or through the
//! queue as a job (async); sustained jobs start on their own threads. Outcomes are counted in the job metrics and
//! refusals come back as [`Refusal`]s, which the HTTP layer turns into its error shape.

use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::api::{IoReport, SustainedLoadRequest};
use crate::executor::Executor;
use crate::jobs::JobState;
use crate::load::cpu::{self, BurnReport};
use crate::load::memory::{self, MemoryReport, Reservation};
use crate::load::{self, sustained::TooManyWorkers};
use crate::metrics::label;
use crate::state::AppState;
use crate::telemetry;
use crate::validate::Mode;

/// Work handed to an executor slot.
#[derive(Debug)]
pub enum Work {
    Cpu {
        cpu_target: Duration,
        complexity: u64,
    },
    Memory {
        reservation: Reservation,
        hold: Duration,
    },
    Io {
        delay: Duration,
    },
}

impl Work {
    /// The `kind` label value.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Cpu { .. } => label::CPU,
            Work::Memory { .. } => label::MEMORY,
            Work::Io { .. } => label::IO,
        }
    }
}

/// What a piece of work measured, by kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Cpu(BurnReport),
    Memory(MemoryReport),
    Io(IoReport),
}

impl Report {
    /// Whether the work ran its full course (not cut short by the drain).
    pub fn completed(&self) -> bool {
        match self {
            Report::Cpu(report) => report.completed,
            Report::Memory(report) => report.completed,
            Report::Io(report) => report.completed,
        }
    }
}

/// Sync work that ran.
#[derive(Debug)]
pub struct Finished {
    /// The validated request, handed back for the response.
    pub request: Value,
    pub queue_wait: Duration,
    pub run: Duration,
    pub report: Report,
}

/// How work was admitted.
#[derive(Debug)]
pub enum Admitted {
    /// Sync: it ran (completed, or cut short by the drain).
    Finished(Finished),
    /// Async: queued as this job.
    Queued(Uuid),
}

/// Why work was refused or failed. Each refusal is already counted in `consumer_jobs_total`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{queue_size} work items already wait for an executor on this replica; retry later")]
    QueueFull { queue_size: u32 },
    #[error("no executor slot became free within {}; this replica is saturated", humantime::format_duration(*.waited))]
    ExecutorsBusy { waited: Duration, executors: u32 },
    #[error("this replica is shutting down and accepts no new work")]
    Draining,
    #[error(
        "{} more workers would exceed this replica's {} sustained workers ({} running)",
        .0.requested, .0.max_workers, .0.active
    )]
    TooManySustainedWorkers(TooManyWorkers),
    #[error("{0}")]
    Failed(String),
}

/// A child span of the current one, only when spans are exported.
fn child_span(name: &str, kind: &str) -> tracing::Span {
    if telemetry::exporting() {
        tracing::info_span!("step", otel.name = name, job.kind = kind)
    } else {
        tracing::Span::none()
    }
}

/// Runs the work; its report, or why it failed.
async fn perform(
    state: &AppState,
    work: Work,
    cancel: &CancellationToken,
) -> Result<Report, String> {
    match work {
        Work::Cpu {
            cpu_target,
            complexity,
        } => {
            let counter = state.metrics.cpu_burn_seconds_total.clone();
            let cancel = cancel.clone();
            let report = state
                .load_threads
                .run(move || {
                    cpu::burn(
                        cpu_target,
                        complexity,
                        cpu::wall_cap_for(cpu_target),
                        &cancel,
                        &|delta| counter.inc_by(delta),
                    )
                })
                .await?;
            Ok(Report::Cpu(report))
        }
        Work::Memory { reservation, hold } => Ok(Report::Memory(
            memory::hold_memory(reservation, hold, cancel).await?,
        )),
        Work::Io { delay } => {
            let started = Instant::now();
            let completed = load::io_wait(delay, cancel).await;
            Ok(Report::Io(IoReport {
                delay_ms: delay.as_millis() as u64,
                waited_seconds: started.elapsed().as_secs_f64(),
                completed,
            }))
        }
    }
}

fn record_outcome(
    state: &AppState,
    kind: &str,
    mode: Mode,
    run: Duration,
    outcome: &Result<Report, String>,
) -> JobState {
    state
        .metrics
        .job_duration_seconds
        .with_label_values(&[kind])
        .observe(run.as_secs_f64());
    let job_state = match outcome {
        Ok(report) if report.completed() => JobState::Done,
        Ok(_) => JobState::Cancelled,
        Err(_) => JobState::Failed,
    };
    state
        .metrics
        .job_finished(kind, mode.as_str(), job_state.outcome());
    job_state
}

/// Refuses new work while draining.
pub fn refuse_if_draining(state: &AppState) -> Result<(), Refusal> {
    if state.is_draining() {
        Err(Refusal::Draining)
    } else {
        Ok(())
    }
}

/// Admits work sync or async; the common path of `/load/cpu`, `/load/memory` and `/load/io`. `request` is the
/// validated request: kept with an async job, handed back with sync work.
pub async fn submit(
    state: &AppState,
    work: Work,
    mode: Mode,
    request: Value,
) -> Result<Admitted, Refusal> {
    let kind = work.kind();
    let ticket = state.executor.enqueue().map_err(|full| {
        state
            .metrics
            .job_finished(kind, mode.as_str(), label::REJECTED);
        Refusal::QueueFull {
            queue_size: full.queue_size,
        }
    })?;
    match mode {
        Mode::Sync => {
            let wait =
                tokio::time::timeout(state.config.slot_wait_timeout, Executor::acquire(ticket));
            let slot = tokio::select! {
                slot = wait.instrument(child_span("queue wait", kind)) => slot.map_err(|_| {
                    state.metrics.job_finished(kind, label::SYNC, label::REJECTED);
                    Refusal::ExecutorsBusy {
                        waited: state.config.slot_wait_timeout,
                        executors: state.executor.executors(),
                    }
                })?,
                _ = state.work_cancel.cancelled() => {
                    state.metrics.job_finished(kind, label::SYNC, label::CANCELLED);
                    return Err(Refusal::Draining);
                }
            };
            let started = Instant::now();
            let outcome = perform(state, work, &state.work_cancel)
                .instrument(child_span("work", kind))
                .await;
            let run = started.elapsed();
            let queue_wait = slot.queue_wait;
            drop(slot);
            record_outcome(state, kind, mode, run, &outcome);
            let report = outcome.map_err(Refusal::Failed)?;
            Ok(Admitted::Finished(Finished {
                request,
                queue_wait,
                run,
                report,
            }))
        }
        Mode::Async => Ok(Admitted::Queued(
            spawn_job(state, work, ticket, request).await,
        )),
    }
}

/// The span of an async job: a job outlives its request, so it gets its own trace, linked to the request that
/// queued it.
fn job_span(id: Uuid, kind: &str) -> tracing::Span {
    if !telemetry::exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        parent: None,
        "job",
        otel.name = %format!("job {kind}"),
        job.id = %id,
        job.kind = kind,
        trace_id = tracing::field::Empty,
    );
    span.add_link(
        tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone(),
    );
    span.record(
        "trace_id",
        tracing::field::display(span.context().span().span_context().trace_id()),
    );
    span
}

async fn spawn_job(
    state: &AppState,
    work: Work,
    ticket: crate::executor::QueueTicket,
    request: Value,
) -> Uuid {
    let kind = work.kind();
    let cancel = state.work_cancel.child_token();
    let id = state
        .jobs
        .create(kind, Mode::Async, JobState::Queued, request, cancel.clone());
    let job_span = job_span(id, kind);
    // Take the place in the slot queue now, in the handler: a spawned task would only join the queue when first
    // polled, and tasks on different workers can be polled out of submission order.
    let wait_span = job_span.in_scope(|| child_span("queue wait", kind));
    let mut acquire = Box::pin(Executor::acquire(ticket).instrument(wait_span));
    let acquired_now = match futures::poll!(acquire.as_mut()) {
        Poll::Ready(slot) => Some(slot),
        Poll::Pending => None,
    };
    let state = state.clone();
    let tasks = state.job_tasks.clone();
    tasks.spawn(
        async move {
            let slot = match acquired_now {
                Some(slot) => Some(slot),
                None => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => None,
                    _ = state.queue_cancel.cancelled() => None,
                    slot = acquire => Some(slot),
                },
            };
            let Some(slot) = slot else {
                let reason = if state.is_draining() {
                    "cancelled before it started: the replica is shutting down"
                } else {
                    "cancelled before it started"
                };
                state
                    .jobs
                    .finish(id, JobState::Cancelled, None, Some(reason.into()));
                state
                    .metrics
                    .job_finished(kind, label::ASYNC, label::CANCELLED);
                return;
            };
            state.jobs.start(id, slot.queue_wait);
            let started = Instant::now();
            let outcome = perform(&state, work, &cancel)
                .instrument(child_span("work", kind))
                .await;
            drop(slot);
            let job_state = record_outcome(&state, kind, Mode::Async, started.elapsed(), &outcome);
            tracing::info!(job_id = %id, kind, state = job_state.outcome(), "job finished");
            match outcome {
                Ok(report) => state.jobs.finish(
                    id,
                    job_state,
                    Some(serde_json::to_value(report).expect("serialisable")),
                    None,
                ),
                Err(reason) => state.jobs.finish(id, job_state, None, Some(reason)),
            }
        }
        .instrument(job_span),
    );
    id
}

/// Starts a sustained CPU job on dedicated threads; its id.
pub fn start_sustained(state: &AppState, request: &SustainedLoadRequest) -> Result<Uuid, Refusal> {
    let cancel = state.work_cancel.child_token();
    let job = state
        .sustained
        .start(
            request.workers as u32,
            Duration::from_secs(request.duration_seconds),
            request.complexity,
            cancel.clone(),
        )
        .map_err(|too_many| {
            state
                .metrics
                .job_finished(label::SUSTAINED, label::ASYNC, label::REJECTED);
            Refusal::TooManySustainedWorkers(too_many)
        })?;
    let id = state.jobs.create(
        label::SUSTAINED,
        Mode::Async,
        JobState::Running,
        serde_json::to_value(request).expect("serialisable"),
        cancel,
    );
    let task_state = state.clone();
    state.job_tasks.spawn(async move {
        let report = job.await;
        let job_state = if report.completed {
            JobState::Done
        } else {
            JobState::Cancelled
        };
        task_state
            .metrics
            .job_duration_seconds
            .with_label_values(&[label::SUSTAINED])
            .observe(report.wall_seconds);
        task_state
            .metrics
            .job_finished(label::SUSTAINED, label::ASYNC, job_state.outcome());
        task_state.jobs.finish(
            id,
            job_state,
            Some(serde_json::to_value(report).expect("serialisable")),
            None,
        );
    });
    tracing::info!(job_id = %id, workers = request.workers, duration_seconds = request.duration_seconds, "sustained cpu job started");
    Ok(id)
}
