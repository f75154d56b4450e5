//! The `node-agent` binary: the agent, or `node-agent shim SPEC` (a container's last step before its program).

use clap::Parser as _;
use contract::exit;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The shim must stay single-threaded until it execs: it is handled before anything else starts.
    if let Some(mode) = args.get(1).filter(|a| *a == "shim" || *a == "shim-exec") {
        let Some(spec) = args.get(2) else {
            eprintln!("usage: node-agent {} SPEC", mode.to_string_lossy());
            std::process::exit(exit::USAGE);
        };
        let spec = std::path::Path::new(spec);
        std::process::exit(if mode == "shim" {
            node_agent::shim::run(spec)
        } else {
            node_agent::shim::exec_into(spec)
        });
    }
    let config = match node_agent::config::Args::parse().check() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("node-agent: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node-agent: cannot start the runtime: {e}");
            std::process::exit(exit::RUNTIME_ERROR);
        }
    };
    let code = runtime.block_on(async {
        let mut signals = match procs::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install the SIGINT and SIGTERM handlers: {e}");
                return exit::RUNTIME_ERROR;
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            let name = signals.next().await;
            tracing::info!("{name}: stopping every pod");
            on_signal.cancel();
        });
        match node_agent::agent::run(config, shutdown).await {
            Ok(()) => exit::OK,
            Err(e) => {
                tracing::error!("{e}");
                exit::RUNTIME_ERROR
            }
        }
    });
    std::process::exit(code);
}
