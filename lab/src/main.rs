//! The `lab` binary: parse the command line, run the cluster-free lab, exit with its code (docs/exit-codes.md).

use clap::Parser as _;

/// The cluster-free autoscaling lab: real consumer replicas and the real scaler on this machine, the KEDA + HPA
/// decisions in-process, a live view and a scaling report.
#[derive(Debug, clap::Parser)]
#[command(name = "lab", version)]
struct Cli {
    #[command(flatten)]
    args: lab::LabArgs,
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
        match lab::run(cli.args).await {
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
