//! The `lab` binary: parse the command line, run the cluster-free lab (with the web console beside it unless
//! `--no-ui`), or `lab console` to serve the console and wait for runs; exit with the code (docs/exit-codes.md).

use clap::Parser as _;

/// The cluster-free autoscaling lab: real consumer replicas and the real scaler on this machine, the KEDA + HPA
/// decisions in-process, a live view, a web console and a scaling report.
#[derive(Debug, clap::Parser)]
#[command(name = "lab", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    args: lab::LabArgs,
    #[command(flatten)]
    ui: lab::console::UiArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the web console and wait for runs started from it, until SIGINT/SIGTERM. The lab's flags set the
    /// defaults of those runs (binaries, consumer arguments, settle, max replicas).
    Console {
        #[command(flatten)]
        args: lab::LabArgs,
        #[command(flatten)]
        ui: lab::console::UiArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lab: cannot start the async runtime: {error}");
            std::process::exit(contract::exit::RUNTIME_ERROR);
        }
    };
    let code = runtime.block_on(async {
        let result = match cli.command {
            Some(Command::Console { args, ui }) => lab::console::serve_until_signal(args, ui).await,
            // The Kafka scenario has no console feed: its runs are not HTTP load.
            None if cli.ui.no_ui || cli.args.scenario == "kafka" => lab::run(cli.args).await,
            None => lab::console::demo(cli.args, cli.ui).await,
        };
        match result {
            Ok(code) => code,
            Err(error) => {
                eprintln!("lab: {error}");
                error.exit_code()
            }
        }
    });
    // `run` has stopped every child it registered. Shutting the runtime down drops every task still alive (and with
    // it any child handle, killed on drop) before `exit`, which would skip those destructors.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
