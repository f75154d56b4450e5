//! The local cluster's tests, against the real API server, scheduler, controllers, kube-proxy and CoreDNS, with
//! the node agent running the pods. One cluster for the whole binary (a custom harness: libtest-mimic): brought up
//! first, the workload tests run in parallel, the disruptive ones after them one by one, then `cluster down`, and
//! a check that nothing of the cluster is left on the machine.

mod fault_report;
mod lab;
mod lab_chaos;
mod lab_chaos_rbac;
mod lab_monitor;
mod lifecycle;
mod platform;
mod support;
mod workloads;

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};

use support::{TestCluster, TestResult, cluster_command, cluster_flags, text};

type Check = fn(&TestCluster) -> TestResult;

fn trials(cluster: &'static TestCluster, checks: &[(&str, Check)]) -> Vec<Trial> {
    checks
        .iter()
        .map(|(name, check)| {
            let check = *check;
            Trial::test(*name, move || check(cluster).map_err(Failed::from))
        })
        .collect()
}

fn main() {
    let args = Arguments::from_args();
    if args.list {
        let names: Vec<Trial> = PARALLEL
            .iter()
            .chain(SERIAL)
            .map(|(n, _)| Trial::test(*n, || Ok(())))
            .collect();
        libtest_mimic::run(&args, names).exit();
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "the cluster tests need root (the local cluster does): run them as root, as CI does"
        );
        std::process::exit(101);
    }
    let root = tempfile::Builder::new()
        .prefix("autoscaling-lab-cluster-test")
        .tempdir()
        .expect("a temporary directory");
    let cluster = match TestCluster::up(root.path()) {
        Ok(c) => &*Box::leak(Box::new(c)),
        Err(e) => {
            eprintln!("{e}");
            let log = std::fs::read_to_string(root.path().join("state/logs/supervisor.log"))
                .unwrap_or_default();
            eprintln!("supervisor log:\n{log}");
            std::process::exit(101);
        }
    };
    let mut failed = 0;
    let first: Conclusion = libtest_mimic::run(&args, trials(cluster, PARALLEL));
    failed += first.num_failed;
    let serial_args = Arguments {
        test_threads: Some(1),
        ..args.clone()
    };
    // The lab as `make dev` installs it, once; its tests share it, one at a time.
    let installed = cluster
        .remove_test_namespaces()
        .and_then(|()| lab::install(cluster));
    let lab_trials: Vec<Trial> = LAB
        .iter()
        .map(|(name, check)| {
            let check = *check;
            let installed = installed.clone();
            Trial::test(*name, move || match &installed {
                Ok(()) => check(cluster).map_err(Failed::from),
                Err(e) => Err(Failed::from(format!("installing the lab failed: {e}"))),
            })
        })
        .collect();
    let lab_run = libtest_mimic::run(&serial_args, lab_trials);
    failed += lab_run.num_failed;
    if let Err(e) = cluster.remove_test_namespaces() {
        eprintln!("{e}");
        failed += 1;
    }
    let second = libtest_mimic::run(&serial_args, trials(cluster, SERIAL));
    failed += second.num_failed;
    // SIGINT stops it as `cluster down`'s SIGTERM does: nothing may be left even before `down` looks.
    let interrupted = support::interrupt_supervisor(cluster);
    let mut flags = vec!["leftovers".to_string()];
    flags.extend(cluster_flags(&cluster.state_dir));
    let left = cluster_command(&cluster.kubeconfig_home, &flags);
    let down = cluster.down();
    if let Err(e) = &interrupted {
        eprintln!("SIGINT to the supervisor: {e}");
        failed += 1;
    }
    if !down.status.success() || !left.status.success() {
        eprintln!(
            "leftovers after SIGINT:\n{}\ncluster down:\n{}",
            text(&left),
            text(&down)
        );
        failed += 1;
    }
    if failed > 0 {
        eprintln!(
            "logs of the cluster: {}",
            root.path().join("state/logs").display()
        );
        // Kept for reading: the directory is the test's.
        std::mem::forget(root);
        std::process::exit(101);
    }
}

const PARALLEL: &[(&str, Check)] = &[
    ("workloads::service_by_name", workloads::service_by_name),
    (
        "workloads::readiness_gates_endpoints",
        workloads::readiness_gates_endpoints,
    ),
    ("workloads::logs_and_follow", workloads::logs_and_follow),
    (
        "workloads::jobs_and_exit_codes",
        workloads::jobs_and_exit_codes,
    ),
    (
        "workloads::delete_drains_and_replaces",
        workloads::delete_drains_and_replaces,
    ),
    (
        "workloads::probes_hooks_and_previous_logs",
        workloads::probes_hooks_and_previous_logs,
    ),
    (
        "platform::pod_isolation_and_environment",
        platform::pod_isolation_and_environment,
    ),
    (
        "platform::guard_keeps_pod_traffic_on_the_machine",
        platform::guard_keeps_pod_traffic_on_the_machine,
    ),
    ("platform::rbac_is_enforced", platform::rbac_is_enforced),
    (
        "platform::network_policy_partition_cuts_traffic",
        platform::network_policy_partition_cuts_traffic,
    ),
    (
        "platform::overlays_pass_server_dry_run",
        platform::overlays_pass_server_dry_run,
    ),
    (
        "platform::unsupported_is_a_pod_error",
        platform::unsupported_is_a_pod_error,
    ),
    (
        "lifecycle::bad_starts_are_refused",
        lifecycle::bad_starts_are_refused,
    ),
];

const LAB: &[(&str, Check)] = &[
    (
        "lab::keda_webhook_refuses_with_kedas_message",
        lab::keda_webhook_refuses_with_kedas_message,
    ),
    (
        "lab::a_job_before_the_lab_waits_then_fails",
        lab::a_job_before_the_lab_waits_then_fails,
    ),
    (
        "lab_monitor::monitor_from_the_host_and_its_rbac",
        lab_monitor::monitor_from_the_host_and_its_rbac,
    ),
    (
        "lab_monitor::monitor_names_the_inputs_it_could_not_read",
        lab_monitor::monitor_names_the_inputs_it_could_not_read,
    ),
    (
        "lab::heavy_job_scales_with_keda_and_the_hpa",
        lab::heavy_job_scales_with_keda_and_the_hpa,
    ),
    (
        "lab::kafka_overlay_runs_its_jobs",
        lab::kafka_overlay_runs_its_jobs,
    ),
    (
        "lab_chaos::chaos_faults_on_the_real_api",
        lab_chaos::chaos_faults_on_the_real_api,
    ),
    (
        "lab_chaos_rbac::chaos_rbac_is_sufficient_and_each_grant_needed",
        lab_chaos_rbac::chaos_rbac_is_sufficient_and_each_grant_needed,
    ),
    (
        "lab_chaos::a_cancelled_run_undoes_its_faults",
        lab_chaos::a_cancelled_run_undoes_its_faults,
    ),
    // Late: it evicts every pod of the node but the consumer's.
    (
        "lab_chaos::drain_respects_the_budget_and_the_pods_come_back",
        lab_chaos::drain_respects_the_budget_and_the_pods_come_back,
    ),
    // After every other lab test: it replaces the development overlay.
    (
        "lab::production_and_compare_hpa_overlays_run",
        lab::production_and_compare_hpa_overlays_run,
    ),
];

const SERIAL: &[(&str, Check)] = &[
    // Alone: a CPU limit is measured against the CPU the machine has free.
    (
        "platform::cpu_limit_throttles",
        platform::cpu_limit_throttles,
    ),
    (
        "lifecycle::api_server_restart_and_process_death",
        lifecycle::api_server_restart_and_process_death,
    ),
    (
        "lifecycle::crash_then_up_cleans",
        lifecycle::crash_then_up_cleans,
    ),
];
