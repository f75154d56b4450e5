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

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match lab::run(cli.args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lab: {error}");
            error.exit_code()
        }
    };
    std::process::exit(code);
}
