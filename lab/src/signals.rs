//! SIGINT and SIGTERM for the `lab` binary: the first stops the load and drains every child, a second SIGKILLs them
//! at once (see [`crate::run`]).

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// SIGINT and SIGTERM, counted.
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }

    pub(crate) async fn watch(
        mut self,
        interrupt: CancellationToken,
        immediate: CancellationToken,
        registry: procs::Registry,
    ) {
        let first = self.next().await;
        eprintln!(
            "lab: {first}: stopping the load and every child (a second signal kills them at once)"
        );
        interrupt.cancel();
        let second = self.next().await;
        let killed = registry.kill_all();
        eprintln!(
            "lab: {second} again: killed {} child process(es)",
            killed.len()
        );
        immediate.cancel();
    }
}
