//! The commands behind the CLI: `run` (a [`plan::RunPlan`] checked from the flags, then [`run::execute`]d), `wait`
//! and `profiles`. Each ends in an exit code: a run's verdict, or an [`AppError`] that carries its own.

mod cleanup;
mod plan;
mod run;
mod sources;
mod verdict;
mod wait;

use tokio_util::sync::CancellationToken;

pub use cleanup::{CleanupSummary, cleanup};
pub use load::error::AppError;
pub use plan::{RunPlan, build_profile};
pub use run::execute;
pub use sources::build_monitor;
pub use verdict::{default_cost_query, judge, measure_target_cpu, write_termination_log};
pub use wait::{WaitError, wait_ready};

use crate::cli::{Cli, Command, ProfilesArgs, ProfilesCommand};
use crate::exit;
use crate::profile::Profile;

/// Run the parsed command line; returns the exit code (an error is printed first, prefixed by the command).
pub async fn run_cli(cli: Cli, shutdown: CancellationToken) -> i32 {
    let (name, result) = match cli.into_command() {
        Command::Run(args) => (
            "run",
            match RunPlan::from_args(&args) {
                Ok(plan) => execute(plan, &args, shutdown).await,
                Err(e) => Err(e),
            },
        ),
        Command::Wait(args) => (
            "wait",
            wait::wait_command(args, shutdown).await.map(|()| exit::OK),
        ),
        Command::Profiles(args) => ("profiles", profiles_command(args)),
        Command::Produce(args) => (
            "produce",
            crate::kafka::produce_command(args, shutdown).await,
        ),
        Command::Verify(args) => ("verify", crate::kafka::verify_command(args).await),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("generator {name}: {e}");
            e.exit_code()
        }
    }
}

fn profiles_command(args: ProfilesArgs) -> Result<i32, AppError> {
    match args.command {
        Some(ProfilesCommand::Show { name }) => {
            let p = match crate::kafka::profiles::builtin(&name) {
                Some(p) => p,
                None => Profile::builtin_or_err(&name).map_err(AppError::usage)?,
            };
            print!("{}", p.to_yaml());
        }
        None => print!("{}", profiles_table()),
    }
    Ok(exit::OK)
}

/// The `generator profiles` listing.
pub fn profiles_table() -> String {
    let mut s = format!(
        "{:<14} {:>9} {:>10} {:>10}  {}\n",
        "profile", "duration", "peak req/s", "requests", "stages / request mix"
    );
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).expect("builtin");
        s.push_str(&format!(
            "{:<14} {:>9} {:>10.0} {:>10.0}  {}\n{:<14} {:>9} {:>10} {:>10}  mix: {}\n{:<14} {:>9} {:>10} {:>10}  {}\n",
            p.name,
            humantime::format_duration(p.duration()).to_string(),
            p.peak_rate(),
            p.expected_requests(),
            p.stages_summary(),
            "",
            "",
            "",
            "",
            p.mix_summary(),
            "",
            "",
            "",
            "",
            p.description
        ));
    }
    s.push_str("\n`generator profiles show NAME` prints one as YAML; `--profile-file FILE` runs your own.\n");
    s.push_str(&crate::kafka::profiles::table());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;
    use crate::model::ArrivalMode;
    use clap::Parser;
    use std::time::Duration;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["generator", "run", "--url", "http://127.0.0.1:1"];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v).unwrap().into_command() {
            Command::Run(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn profile_building() {
        let (p, mode) = build_profile(&run_args(&[
            "--test",
            "demo",
            "--time-scale",
            "0.1",
            "--rate-scale",
            "2",
        ]))
        .unwrap();
        assert_eq!(mode, ArrivalMode::Open);
        assert_eq!(p.duration(), Duration::from_secs(9));
        assert_eq!(p.peak_rate(), 100.0);
        let (p, mode) =
            build_profile(&run_args(&["--rate", "max", "--duration", "2s", "-c", "4"])).unwrap();
        assert_eq!(mode, ArrivalMode::ClosedLoop { connections: 4 });
        assert_eq!(p.requests[0].method, "GET");
        let (p, _) = build_profile(&run_args(&[
            "--rate",
            "10",
            "--duration",
            "2s",
            "--body",
            "{\"a\":1}",
            "--path",
            "/load/io",
        ]))
        .unwrap();
        assert_eq!(p.requests[0].method, "POST");
        assert!(
            build_profile(&run_args(&["--rate", "10"]))
                .unwrap_err()
                .contains("--duration")
        );
        assert!(
            build_profile(&run_args(&[
                "--rate",
                "10",
                "--duration",
                "1s",
                "--body",
                "{"
            ]))
            .unwrap_err()
            .contains("JSON")
        );
        assert!(
            build_profile(&run_args(&[]))
                .unwrap_err()
                .contains("--test")
        );
        assert!(
            build_profile(&run_args(&["--test", "nope"]))
                .unwrap_err()
                .contains("unknown profile")
        );
    }

    #[test]
    fn chaos_flags_take_cluster_actions_and_refuse_the_labs() {
        let base = ["--rate", "10", "--duration", "5s"];
        let plan = RunPlan::from_args(&run_args(
            &[
                &base[..],
                &[
                    "--chaos",
                    "at=1s,action=evict-pod",
                    "--chaos-threshold",
                    "recovery<30s",
                ],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(plan.chaos.len(), 1);
        assert_eq!(plan.chaos_thresholds.len(), 1);
        let usage =
            |extra: &[&str]| match RunPlan::from_args(&run_args(&[&base[..], extra].concat())) {
                Err(AppError::Usage(text)) => text,
                other => panic!("expected a usage error, got {other:?}"),
            };
        let e = usage(&["--chaos", "at=1s,action=kill"]);
        assert!(e.contains("the lab") && e.contains("delete-pod"), "{e}");
        let e = usage(&["--chaos", "at=9s,action=delete-pod"]);
        assert!(e.contains("not inside the load"), "{e}");
        let e = usage(&["--chaos-threshold", "recovery<30s"]);
        assert!(e.contains("no faults"), "{e}");
    }

    #[test]
    fn profiles_listing_names_every_builtin() {
        let t = profiles_table();
        for n in Profile::builtin_names() {
            assert!(t.contains(n));
        }
    }
}
