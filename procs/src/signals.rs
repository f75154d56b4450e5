//! SIGINT and SIGTERM for the lab's binaries, set up once: installed when [`Signals::install`] is called (in `main`,
//! before any listener is served or any work starts), so a signal sent right after the `listening` line meets the
//! handler rather than the default action, which would kill the process without a drain or a partial report.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, received in turn (a supervisor's first signal drains, a second may stop at once).
#[derive(Debug)]
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next SIGINT or SIGTERM: its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_sent_after_install_is_received_by_name() {
        let mut signals = Signals::install().expect("installed");
        assert!(crate::send_signal(
            std::process::id(),
            crate::signal::SIGTERM
        ));
        let name = tokio::time::timeout(std::time::Duration::from_secs(5), signals.next())
            .await
            .expect("received");
        assert_eq!(name, "SIGTERM");
    }
}
