//! The `cluster` binary: `up`, `down`, `status`, `leftovers`, and `run` (the supervisor); docs/kubernetes.md.

use clap::Parser as _;
use cluster::cli::{Cli, Command};
use contract::exit;

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        // The launcher runs between the supervisor and a component: no runtime, no threads.
        Command::Exec {
            cgroup_procs,
            netns,
            command,
        } => cluster::cli::exec(&cgroup_procs, netns.as_deref(), &command),
        Command::Up {
            args,
            no_switch,
            wait,
        } => cluster::cli::up(&args, no_switch, wait),
        Command::Status { args } => cluster::cli::status(&args),
        command => runtime().block_on(async_command(command)),
    };
    std::process::exit(code);
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cluster: cannot start the runtime: {e}");
            std::process::exit(exit::RUNTIME_ERROR);
        }
    }
}

async fn async_command(command: Command) -> i32 {
    match command {
        Command::Down { args } => cluster::cli::down(&args).await,
        Command::Leftovers { args } => cluster::cli::leftovers(&args).await,
        Command::Run { args } => run(&args).await,
        _ => unreachable!("handled in main"),
    }
}

async fn run(args: &cluster::config::ClusterArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_target(false)
        .with_ansi(false)
        .init();
    let cluster = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return exit::USAGE;
        }
    };
    if let Err(refusal) = cluster::preflight::check(&cluster) {
        tracing::error!("{refusal}");
        return refusal.exit_code();
    }
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
        tracing::info!("{name}: stopping the cluster");
        on_signal.cancel();
    });
    match cluster::supervisor::run(cluster, shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => e.exit_code(),
    }
}
