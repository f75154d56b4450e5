//! The `generator` binary: parse the command line, set up logging and signals, run the command, exit with its code.

use std::io::IsTerminal as _;

use clap::Parser as _;
use generator::{Cli, app, exit};
use tokio_util::sync::CancellationToken;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.with_writer(std::io::stderr).init();
    } else {
        builder.json().with_writer(std::io::stdout).init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let shutdown = CancellationToken::new();
    // The handlers are installed here, before any work starts: installed inside the spawned task they could still be
    // missing when the first signal arrives, and the default action would kill the process with no partial report.
    match procs::Signals::install() {
        Ok(mut signals) => {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                signals.next().await;
                eprintln!(
                    "signal received: stopping the load, finishing in-flight requests, writing the partial report"
                );
                shutdown.cancel();
                // A second signal means: stop now.
                signals.next().await;
                std::process::exit(exit::INTERRUPTED);
            });
        }
        Err(error) => {
            eprintln!(
                "cannot install the SIGTERM/SIGINT handlers ({error}): a signal ends the run without a report"
            );
        }
    }
    let code = app::run_cli(cli, shutdown).await;
    std::process::exit(code);
}
