//! `serve`: runs the HTTP server on an already-bound listener until the shutdown future resolves, then drains:
//! readiness goes 503 at once, queued async jobs are cancelled (state recorded), sustained workers stop, in-flight
//! `/load/*` requests and running jobs get `--shutdown-grace` to finish, and what is still running then is cut short.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ConsumerError;
use crate::state::AppState;

/// After the grace period, cut-short work gets this long to record its state.
const CANCEL_SETTLE: Duration = Duration::from_secs(2);
/// After the drain, open connections get this long to close before `serve` returns anyway.
const CONNECTION_CLOSE: Duration = Duration::from_secs(3);

/// Serves the consumer on `listener` until `shutdown` resolves, then drains and returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsumerError> {
    let state = AppState::new(config);
    // The drain waits for the worker like for a job: stop fetching, finish the messages in hand, leave the group.
    if let Some(worker) = crate::kafka::Worker::connect(&state)? {
        state.job_tasks.spawn(worker.run());
    }
    let app = crate::routes::app(state.clone());
    let addr = listener.local_addr()?;
    tracing::info!(
        kind = contract::listening::kind::HTTP,
        addr = %addr,
        pod = %state.pod_name,
        executors = state.config.executors,
        queue_size = state.config.queue_size,
        memory_budget_bytes = state.memory.budget(),
        "{}",
        contract::listening::MESSAGE
    );

    let stop_server = CancellationToken::new();
    let drain = tokio::spawn(drain_after(shutdown, state.clone(), stop_server.clone()));
    let server = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(stop_server.clone().cancelled_owned());
    let closing_bound = async {
        stop_server.cancelled().await;
        tokio::time::sleep(CONNECTION_CLOSE).await;
    };
    tokio::select! {
        result = server => result?,
        _ = closing_bound => tracing::warn!("connections still open after the drain; closing them"),
    }
    if let Err(error) = drain.await {
        tracing::error!(%error, "drain task failed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn drain_after(
    shutdown: impl Future<Output = ()>,
    state: AppState,
    stop_server: CancellationToken,
) {
    shutdown.await;
    state.start_draining();
    let grace = state.config.shutdown_grace;
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        in_flight = state.work_in_flight(),
        queued = state.executor.waiting(),
        running = state.executor.running(),
        "shutdown requested: draining"
    );
    state.queue_cancel.cancel();
    let stopped = state.jobs.cancel_kind(crate::metrics::label::SUSTAINED);
    if !stopped.is_empty() {
        tracing::info!(jobs = stopped.len(), "sustained jobs stopped");
    }
    state.job_tasks.close();

    let deadline = tokio::time::Instant::now() + grace;
    let settled = wait_until_idle(&state, deadline).await;
    if !settled {
        tracing::warn!(
            in_flight = state.work_in_flight(),
            running = state.executor.running(),
            "grace period over: cutting running work short"
        );
        state.work_cancel.cancel();
        wait_until_idle(&state, tokio::time::Instant::now() + CANCEL_SETTLE).await;
    }
    tracing::info!("drained");
    stop_server.cancel();
}

/// Waits (polling; bounded by `deadline`) until no `/load/*` request is in flight and no job task is alive.
async fn wait_until_idle(state: &AppState, deadline: tokio::time::Instant) -> bool {
    loop {
        if state.work_in_flight() == 0 && state.job_tasks.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
