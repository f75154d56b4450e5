//! Cross-check of the load-test Jobs (`manifests/components/load-generator/job-*.yaml`) against the generator's own
//! command-line parser: every container's args parse with `Cli::try_parse_from`, every profile named exists, the init
//! container is `generator wait`, the main container runs with `--monitor --cleanup`, the chaos Job's faults are
//! cluster faults inside its load with valid thresholds, and the Job's deadline leaves room for the wait, the profile
//! and the scale-down watch.

use std::path::PathBuf;
use std::time::Duration;

use chaos_spec::ChaosSpec;
use clap::Parser;
use generator::cli::{Cli, Command};
use generator::profile::Profile;
use serde_norway::Value;

const JOB_DIR: &str = "manifests/components/load-generator";

fn job_files() -> Vec<PathBuf> {
    let dir = testkit::workspace_root().join(JOB_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("job-") && name.ends_with(".yaml")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the 7 profile Jobs and the distributed one, found {files:?}"
    );
    files
}

fn strings(value: &Value, what: &str) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{what}: {v:?} is not a string"))
                .to_string()
        })
        .collect()
}

/// argv as the container runtime builds it: `command` then `args`.
fn argv(container: &Value, what: &str) -> Vec<String> {
    let mut argv = strings(&container["command"], &format!("{what}.command"));
    argv.extend(strings(&container["args"], &format!("{what}.args")));
    assert_eq!(
        argv[0], "/usr/local/bin/generator",
        "{what} runs the generator binary of the image"
    );
    argv
}

fn parse(argv: &[String], what: &str) -> Command {
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("the generator refuses the args of {what}: {argv:?}\n{e}"))
        .into_command()
}

#[test]
fn every_job_parses_with_the_generator_cli_and_names_a_builtin_profile() {
    for path in job_files() {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read job");
        let job: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(job["kind"].as_str(), Some("Job"), "{file}");
        let pod = &job["spec"]["template"]["spec"];

        let init = &pod["initContainers"][0];
        match parse(&argv(init, &format!("{file} init container")), &file) {
            Command::Wait(wait) => {
                assert_eq!(
                    wait.url, "http://consumer.autoscaling-lab.svc.cluster.local:8080",
                    "{file}"
                );
                assert!(wait.timeout <= Duration::from_secs(300), "{file}");
            }
            other => panic!("{file}: the init container must run `generator wait`, got {other:?}"),
        }

        let main = &pod["containers"][0];
        let run = match parse(&argv(main, &format!("{file} container")), &file) {
            Command::Run(run) => run,
            other => panic!("{file}: the container must run `generator run`, got {other:?}"),
        };
        assert!(run.monitor && run.cleanup, "{file}: --monitor --cleanup");
        assert_eq!(
            run.url,
            ["http://consumer.autoscaling-lab.svc.cluster.local:8080"],
            "{file}"
        );
        let name = run
            .test
            .clone()
            .unwrap_or_else(|| panic!("{file}: --test names a profile"));
        let profile = Profile::builtin(&name).unwrap_or_else(|| {
            panic!(
                "{file}: profile {name:?} is not built in; known: {:?}",
                Profile::builtin_names()
            )
        });
        let expected = file.trim_start_matches("job-").trim_end_matches(".yaml");
        // The distributed Job splits heavy over pods; the chaos Job runs medium under cluster faults.
        match expected {
            "distributed" => assert_eq!(profile.name, "heavy", "{file}"),
            "chaos" => {
                assert_eq!(profile.name, "medium", "{file}");
                let specs: Vec<ChaosSpec> = run
                    .chaos
                    .iter()
                    .map(|t| ChaosSpec::parse_flag(t).unwrap_or_else(|e| panic!("{file}: {e}")))
                    .collect();
                assert!(specs.len() >= 3, "{file}: {specs:?}");
                let faults = generator::chaos::cluster_faults(&specs)
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                for f in &faults {
                    f.check(Some(profile.duration()))
                        .unwrap_or_else(|(field, why)| panic!("{file}: {field} {why}"));
                }
                let thresholds = run.chaos_threshold.as_deref().expect("--chaos-threshold");
                generator::chaos::Threshold::parse_list(thresholds, 1.0)
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            _ => assert_eq!(
                profile.name, expected,
                "{file} is named after the profile it runs"
            ),
        }
        assert_eq!(
            run.metrics_port, 9464,
            "{file}: the PodMonitor scrapes port 9464"
        );

        // The deadline covers the wait, the whole profile and the scale-down watch.
        let profile_length: Duration = profile.stages.iter().map(|s| s.duration).sum();
        let needed = Duration::from_secs(300) + profile_length + run.monitor_opts.watch_after;
        let deadline = Duration::from_secs(
            job["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: activeDeadlineSeconds")),
        );
        assert!(
            deadline > needed,
            "{file}: activeDeadlineSeconds {deadline:?} does not cover wait + profile + watch ({needed:?})"
        );
    }
}

#[test]
fn the_distributed_job_splits_the_rate_across_its_pods() {
    let path = testkit::workspace_root()
        .join(JOB_DIR)
        .join("job-distributed.yaml");
    let job: Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let parallelism = spec["parallelism"].as_u64().expect("parallelism");
    assert_eq!(spec["completions"].as_u64(), Some(parallelism));
    assert!(parallelism > 1);
    let container = &spec["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let pods = env
        .iter()
        .find(|(name, _)| name == "LOAD_PODS")
        .map(|(_, value)| value.clone())
        .expect("LOAD_PODS tells each pod how many share the rate");
    assert_eq!(pods, parallelism.to_string());
    // The same pod count through the CLI's flag parses (the env var is that flag's fallback).
    let mut args = argv(container, "job-distributed.yaml container");
    args.extend([
        "--pods".to_string(),
        pods.clone(),
        "--pod-index".to_string(),
        "2".to_string(),
    ]);
    match parse(&args, "job-distributed.yaml") {
        Command::Run(run) => {
            assert_eq!(run.pods.to_string(), pods);
            assert_eq!(run.pod_index, 2);
        }
        other => panic!("expected run, got {other:?}"),
    }
}

#[test]
fn a_bad_job_argument_is_refused() {
    // The parse above can fail: a misspelt flag is an error, not ignored.
    let argv = [
        "/usr/local/bin/generator",
        "run",
        "--url",
        "http://x:8080",
        "--test",
        "heavy",
        "--monitr",
    ];
    assert!(Cli::try_parse_from(argv).is_err());
    assert!(Profile::builtin("no-such-profile").is_none());
}
