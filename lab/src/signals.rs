//! SIGINT and SIGTERM for the `lab` binary: the first stops the load and drains every child, a second SIGKILLs them
//! at once (see [`crate::run`]). The handlers are `procs`' one set-up.

use procs::Signals;
use tokio_util::sync::CancellationToken;

pub(crate) async fn watch(
    mut signals: Signals,
    interrupt: CancellationToken,
    immediate: CancellationToken,
    registry: procs::Registry,
) {
    let first = signals.next().await;
    eprintln!(
        "lab: {first}: stopping the load and every child (a second signal kills them at once)"
    );
    interrupt.cancel();
    let second = signals.next().await;
    let killed = registry.kill_all();
    eprintln!(
        "lab: {second} again: killed {} child process(es)",
        killed.len()
    );
    immediate.cancel();
}
