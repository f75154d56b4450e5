//! One container of a running pod, for as long as the pod runs it: build its environment and mounts, start it,
//! run its postStart hook and probes, and when it ends restart it per the pod's restartPolicy with the kubelet's
//! back-off (the first restart at once, then 10 s doubling to 5 min, reset after 10 min of running). On stop:
//! its preStop hook, then SIGTERM, the rest of the grace period, SIGKILL.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use tokio::sync::mpsc;

use super::container::{self, Exit, Running, Start};
use super::context::ContainerEntry;
use super::env;
use super::probe::{self, Handler, Prober, Settings, Target};
use super::status::State;
use super::worker::PodCtx;
use crate::logs;
use crate::shim::ExecInto;

/// Which list a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    /// An init container with `restartPolicy: Always`: started before the next, runs with the pod.
    Sidecar,
    App,
}

/// The kubelet's crash-loop back-off.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before it ended starts its back-off again from the beginning.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

impl Backoff {
    /// The wait before the next start, after a run of `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= BACKOFF_RESET {
            self.failures = 0;
        }
        let wait = match self.failures {
            0 => Duration::ZERO,
            n => (BACKOFF_START * 2u32.saturating_pow(n - 1)).min(BACKOFF_MAX),
        };
        self.failures += 1;
        wait
    }
}

fn restarts(policy: &str, kind: Kind, exit: &Exit) -> bool {
    match (kind, policy) {
        (Kind::Sidecar, _) => true,
        // A failed init container is run again unless the pod never restarts anything.
        (Kind::Init, "Never") => false,
        (Kind::Init, _) => exit.exit_code != 0,
        (Kind::App, "Always") => true,
        (Kind::App, "OnFailure") => exit.exit_code != 0,
        (Kind::App, _) => false,
    }
}

/// Runs the container until it ends for good (its last exit) or the pod stops it (`None`).
pub async fn run(ctx: Arc<PodCtx>, spec: Container, kind: Kind) -> Option<Exit> {
    let name = spec.name.clone();
    let mut backoff = Backoff::default();
    loop {
        if ctx.stop.is_cancelled() {
            return None;
        }
        let restart = ctx.with_container(kind, &name, |c| c.restart_count);
        let started = Instant::now();
        let mut running = match start(&ctx, &spec, restart).await {
            Ok(r) => r,
            Err((reason, message)) => {
                let retry = reason == "ErrImageNeverPull" || reason.ends_with("ConfigError");
                ctx.set_state(
                    kind,
                    &name,
                    State::Waiting {
                        reason: reason.to_string(),
                        message: Some(message.clone()),
                    },
                );
                ctx.agent
                    .event(
                        &ctx.pod,
                        true,
                        if retry { "Failed" } else { "FailedCreate" },
                        format!("Error: {message}"),
                    )
                    .await;
                let wait = if retry {
                    Duration::from_secs(10)
                } else {
                    backoff.next(Duration::ZERO).max(Duration::from_secs(1))
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = ctx.stop.cancelled() => return None,
                }
            }
        };
        let container_id = format!(
            "{}://{}-{name}-{restart}",
            crate::node::RUNTIME_NAME,
            short(&ctx.uid)
        );
        ctx.with_container(kind, &name, |c| {
            c.state = State::Running {
                started_at: running.started_at,
            };
            c.container_id = Some(container_id.clone());
            c.started = spec.startup_probe.is_none() && kind != Kind::Init;
            c.ready = false;
        });
        ctx.registry_update(&name, restart, true, &running);
        ctx.notify();
        ctx.agent
            .event(
                &ctx.pod,
                false,
                "Started",
                format!("Started container {name}"),
            )
            .await;

        let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<String>();
        let probes = (kind != Kind::Init).then(|| {
            tokio::spawn(probe_loop(
                ctx.clone(),
                spec.clone(),
                kind,
                exec_context(&ctx, &spec, &running),
                kill_tx.clone(),
            ))
        });
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(why) = run_hook(&ctx, &spec, hook, &running, Duration::from_secs(30)).await
        {
            ctx.agent
                .event(
                    &ctx.pod,
                    true,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {why}"),
                )
                .await;
            // The runner is waiting on this channel while the container runs; a closed one means it ended anyway.
            let _ = kill_tx.send("its postStart hook failed".into());
        }
        let exit = tokio::select! {
            exit = running.wait() => exit,
            why = kill_rx.recv() => {
                let why = why.unwrap_or_default();
                ctx.agent.event(&ctx.pod, false, "Killing", format!("Container {name} {why}, will be restarted")).await;
                let grace = spec_grace(&ctx);
                running.stop(grace).await
            }
            _ = ctx.stop.cancelled() => {
                let exit = stop_container(&ctx, &spec, &mut running).await;
                if let Some(p) = probes { p.abort(); }
                record_exit(&ctx, kind, &name, &exit, &container_id, restart, &running);
                return None;
            }
        };
        if let Some(p) = probes {
            p.abort();
        }
        record_exit(&ctx, kind, &name, &exit, &container_id, restart, &running);
        if !restarts(&ctx.restart_policy, kind, &exit) {
            return Some(exit);
        }
        let wait = backoff.next(started.elapsed());
        ctx.with_container(kind, &name, |c| {
            c.restart_count += 1;
            if !wait.is_zero() {
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={name} pod={}_{}({})",
                        wait.as_secs(),
                        ctx.name,
                        ctx.namespace,
                        ctx.uid
                    )),
                };
            }
        });
        ctx.notify();
        if !wait.is_zero() {
            ctx.agent
                .event(
                    &ctx.pod,
                    true,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {}",
                        ctx.name
                    ),
                )
                .await;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.stop.cancelled() => return None,
        }
    }
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

fn record_exit(
    ctx: &PodCtx,
    kind: Kind,
    name: &str,
    exit: &Exit,
    container_id: &str,
    restart: u32,
    running: &Running,
) {
    ctx.with_container(kind, name, |c| {
        let terminated = State::Terminated {
            exit: exit.clone(),
            container_id: container_id.to_string(),
        };
        c.last = Some(terminated.clone());
        c.state = terminated;
        c.ready = false;
        c.started = false;
    });
    ctx.registry_update(name, restart, false, running);
    ctx.notify();
}

fn spec_grace(ctx: &PodCtx) -> Duration {
    Duration::from_secs(ctx.grace_seconds.load(Ordering::SeqCst))
}

/// The pod is stopping: preStop within the grace period, then SIGTERM, what is left of it, SIGKILL.
async fn stop_container(ctx: &PodCtx, spec: &Container, running: &mut Running) -> Exit {
    let grace = spec_grace(ctx);
    let begun = Instant::now();
    ctx.agent
        .event(
            &ctx.pod,
            false,
            "Killing",
            format!("Stopping container {}", spec.name),
        )
        .await;
    if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Err(why) = run_hook(ctx, spec, hook, running, grace).await
    {
        ctx.agent
            .event(
                &ctx.pod,
                true,
                "FailedPreStopHook",
                format!("PreStopHook failed: {why}"),
            )
            .await;
    }
    // The kubelet leaves at least 2 s for SIGTERM after a hook that used the whole grace period.
    let left = grace
        .saturating_sub(begun.elapsed())
        .max(Duration::from_secs(2));
    running.stop(left).await
}

async fn start(
    ctx: &PodCtx,
    spec: &Container,
    restart: u32,
) -> Result<Running, (&'static str, String)> {
    let image_ref = spec.image.clone().unwrap_or_default();
    let command = spec.command.clone().unwrap_or_default();
    let args = spec.args.clone().unwrap_or_default();
    // The image is resolved once the environment is known: `$(VAR)` in command and args expands from it.
    let inputs = env::Inputs {
        pod: &ctx.pod,
        pod_ip: &ctx.sandbox.ip.to_string(),
        host_ip: &ctx.agent.config.args.node_ip.to_string(),
        services: &ctx.services(),
        node_cpu: ctx.agent.node_cpu,
        node_memory: ctx.agent.node_memory,
    };
    let pod_env = env::build(spec, &inputs, &ctx.agent.objects)
        .await
        .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
    let lookup = |name: &str| {
        pod_env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let command: Vec<String> = command.iter().map(|c| env::expand(c, &lookup)).collect();
    let args: Vec<String> = args.iter().map(|a| env::expand(a, &lookup)).collect();
    let image = ctx
        .agent
        .images
        .resolve(&image_ref, &command, &args)
        .map_err(|e| (e.reason(), e.to_string()))?;
    let identity = container::identity(&ctx.pod, spec, &image)
        .map_err(|e| ("CreateContainerConfigError", e))?;
    let mut environment = image.env.clone();
    environment.retain(|(k, _)| !pod_env.iter().any(|(p, _)| p == k));
    environment.push(("HOSTNAME".into(), ctx.hostname.clone()));
    environment.extend(pod_env.iter().cloned());
    let mounts = {
        let volumes = ctx.volumes.lock().await;
        volumes
            .mounts(spec, &pod_env)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?
    };
    let working_dir = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    let group = ctx.agent.pod_group(&ctx.uid, Some(&spec.name));
    let log_file = logs::file(&ctx.log_dir, &spec.name, restart);
    container::start(Start {
        agent: &ctx.agent.exe,
        identity,
        env: environment,
        mounts,
        working_dir,
        hostname: ctx.hostname.clone(),
        netns: crate::isolate::netns_path(&ctx.sandbox.netns),
        limits: container::limits(spec),
        group,
        run_dir: container::run_dir(&ctx.run_dir, &spec.name, restart),
        etc_files: ctx.etc_files.clone(),
        log_file,
        log_max_bytes: ctx.agent.config.args.container_log_max_bytes,
        image,
    })
    .await
}

/// What an exec probe or hook needs to enter the container.
fn exec_context(ctx: &PodCtx, spec: &Container, running: &Running) -> Option<ExecInto> {
    let image = ctx
        .agent
        .images
        .resolve(
            spec.image.as_deref().unwrap_or_default(),
            spec.command.as_deref().unwrap_or_default(),
            &[],
        )
        .ok()?;
    let identity = container::identity(&ctx.pod, spec, &image).ok()?;
    let mut env = image.env.clone();
    env.extend(
        spec.env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v))),
    );
    Some(ExecInto {
        target_pid: running.pid,
        command: Vec::new(),
        env,
        working_dir: spec
            .working_dir
            .clone()
            .or(image.working_dir)
            .unwrap_or_else(|| "/".into()),
        uid: Some(identity.uid),
        gid: Some(identity.gid),
        supplemental_groups: identity.supplemental_groups,
        cgroup_procs: running.group.procs_files(),
    })
}

async fn run_hook(
    ctx: &PodCtx,
    spec: &Container,
    hook: &LifecycleHandler,
    running: &Running,
    budget: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(budget)).await;
        return Ok(());
    }
    let handler = if let Some(h) = &hook.http_get {
        Handler::Http(h)
    } else if let Some(t) = &hook.tcp_socket {
        Handler::Tcp(t)
    } else if let Some(e) = &hook.exec {
        Handler::Exec(e)
    } else {
        return Err(
            "the hook has no handler the node agent supports (exec, httpGet, sleep)".into(),
        );
    };
    let scratch = ctx.run_dir.join("exec");
    let target = Target {
        pod_ip: ctx.sandbox.ip,
        container: spec,
        agent: &ctx.agent.exe,
        exec: exec_context(ctx, spec, running),
        scratch: &scratch,
    };
    probe::run(&handler, &target, budget.max(Duration::from_secs(1))).await
}

/// Startup, then liveness and readiness, each on its period; a failed startup or liveness verdict asks the runner
/// to kill the container.
async fn probe_loop(
    ctx: Arc<PodCtx>,
    spec: Container,
    kind: Kind,
    exec: Option<ExecInto>,
    kill: mpsc::UnboundedSender<String>,
) {
    let name = spec.name.clone();
    let scratch = ctx.run_dir.join("exec");
    let target = Target {
        pod_ip: ctx.sandbox.ip,
        container: &spec,
        agent: &ctx.agent.exe,
        exec,
        scratch: &scratch,
    };
    if let Some(startup) = &spec.startup_probe {
        if !watch(&ctx, &target, startup, "Startup", |_| {}).await {
            let _ = kill.send("failed startup probe".into());
            return;
        }
        ctx.with_container(kind, &name, |c| c.started = true);
        ctx.notify();
    }
    let readiness = async {
        match &spec.readiness_probe {
            None => {
                ctx.with_container(kind, &name, |c| c.ready = true);
                ctx.notify();
            }
            Some(p) => {
                watch(&ctx, &target, p, "Readiness", |ready| {
                    ctx.with_container(kind, &name, |c| c.ready = ready);
                    ctx.notify();
                })
                .await;
            }
        }
    };
    let liveness = async {
        if let Some(p) = &spec.liveness_probe
            && !watch(&ctx, &target, p, "Liveness", |_| {}).await
        {
            let _ = kill.send("failed liveness probe".into());
        }
    };
    tokio::join!(readiness, liveness);
}

/// Probes on its period. Readiness calls `on_verdict` on every change and never returns; startup returns `true`
/// on its first success; liveness returns `false` on its failure verdict.
async fn watch(
    ctx: &PodCtx,
    target: &Target<'_>,
    p: &Probe,
    what: &str,
    on_verdict: impl Fn(bool),
) -> bool {
    let Some(handler) = Handler::of(p) else {
        ctx.agent
            .event(
                &ctx.pod,
                true,
                "Unhealthy",
                format!(
                    "{what} probe: {}",
                    probe::check_supported(p).err().unwrap_or_default()
                ),
            )
            .await;
        return what != "Liveness" && what != "Startup";
    };
    let settings = Settings::of(p);
    let mut prober = Prober::new(settings);
    tokio::time::sleep(settings.initial_delay).await;
    loop {
        let result = probe::run(&handler, target, settings.timeout).await;
        if let Err(why) = &result {
            ctx.agent
                .event(
                    &ctx.pod,
                    true,
                    "Unhealthy",
                    format!("{what} probe failed: {why}"),
                )
                .await;
        }
        if let Some(verdict) = prober.record(result.is_ok()) {
            match what {
                "Readiness" => on_verdict(verdict),
                "Startup" if verdict => return true,
                "Startup" | "Liveness" if !verdict => return false,
                _ => {}
            }
        }
        tokio::time::sleep(settings.period).await;
    }
}

impl PodCtx {
    fn registry_update(&self, name: &str, restart: u32, running: bool, r: &Running) {
        self.agent.registry.update_container(
            &self.namespace,
            &self.name,
            name,
            ContainerEntry {
                restart_count: restart,
                running,
                group: r.group.clone(),
                started_at: Some(r.started_at.as_nanosecond() as f64 / 1e9),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_the_kubelets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| b.next(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            b.next(Duration::from_secs(601)),
            Duration::ZERO,
            "a long run resets it"
        );
    }

    fn exit(code: i32) -> Exit {
        Exit {
            exit_code: code,
            signal: None,
            reason: "x",
            message: None,
            started_at: k8s_openapi::jiff::Timestamp::now(),
            finished_at: k8s_openapi::jiff::Timestamp::now(),
        }
    }

    #[test]
    fn restart_policy() {
        assert!(restarts("Always", Kind::App, &exit(0)));
        assert!(!restarts("Never", Kind::App, &exit(1)));
        assert!(restarts("OnFailure", Kind::App, &exit(1)));
        assert!(!restarts("OnFailure", Kind::App, &exit(0)));
        assert!(
            restarts("Always", Kind::Init, &exit(1)),
            "a failed init container is retried"
        );
        assert!(!restarts("Always", Kind::Init, &exit(0)));
        assert!(!restarts("Never", Kind::Init, &exit(1)));
        assert!(restarts("Never", Kind::Sidecar, &exit(0)));
    }
}
