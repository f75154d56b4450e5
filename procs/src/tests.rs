//! The child-process type against `/bin/sh` scripts: startup by the `listening` line, output captured to the last
//! line, stop by SIGTERM or SIGKILL, and the registry's kill switch.

use std::time::Duration;

use crate::{Child, Registry, Spawn, StopOutcome, is_gone};

fn sh(script: &str) -> Spawn {
    Spawn::new("/bin/sh").args(["-c", script])
}

const LISTEN_HTTP: &str =
    r#"echo '{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:4321"}}'"#;

#[tokio::test]
async fn a_child_is_started_by_its_listening_line_and_drained_by_sigterm() {
    let script = format!(
        "trap 'echo draining; exit 0' TERM\necho 'not json'\n{LISTEN_HTTP}\nwhile true; do sleep 0.05; done"
    );
    let mut child = sh(&script)
        .name("fake")
        .listening(&["http"], Duration::from_secs(10))
        .start()
        .await
        .expect("started");
    assert_eq!(child.addr("http"), Some("127.0.0.1:4321".parse().unwrap()));
    assert!(!is_gone(child.pid()));
    assert_eq!(
        child.stop(Duration::from_secs(5)).await,
        StopOutcome::Drained(Some(0))
    );
    assert!(is_gone(child.pid()), "reaped");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", child.pid())).exists(),
        "reaped, not a zombie"
    );
    assert_eq!(
        child.output_lines().last().map(String::as_str),
        Some("draining")
    );
    assert!(!child.signal(15), "no signal after the reap");
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
    let script = format!("trap '' TERM\n{LISTEN_HTTP}\nwhile true; do sleep 0.05; done");
    let mut child = sh(&script)
        .listening(&["http"], Duration::from_secs(10))
        .start()
        .await
        .expect("started");
    assert_eq!(
        child.stop(Duration::from_millis(300)).await,
        StopOutcome::Killed
    );
    assert!(is_gone(child.pid()));
}

#[tokio::test]
async fn start_failures_say_why_and_leave_nothing_running() {
    let err = sh("echo 'boom: bad flag' >&2; exit 2")
        .name("broken")
        .listening(&["http"], Duration::from_secs(10))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken exited (exit status: 2)"), "{err}");
    assert!(err.contains("boom: bad flag"), "{err}");

    let registry = Registry::new();
    let err = sh(&format!("{LISTEN_HTTP}; exec sleep 30"))
        .name("half")
        .listening(&["http", "grpc"], Duration::from_millis(300))
        .register(&registry)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("half did not log `listening` for grpc"),
        "{err}"
    );
    assert!(registry.live().is_empty(), "{:?}", registry.live());

    let err = Spawn::new("/nonexistent/consumer")
        .listening(&["http"], Duration::from_secs(1))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/consumer"), "{err}");
}

/// Defect 7: a child's last lines, written right before it exits, are in the captured output once `wait` returns.
/// Without the wait for end-of-file on both pipes, some of these rounds miss lines (the reader tasks have not caught
/// up when `waitpid` returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_only_after_every_line_the_child_wrote_is_captured() {
    const LINES: usize = 2000;
    for round in 0..40 {
        // Both streams, the last line on each written just before exit.
        let script = format!(
            "i=0; while [ $i -lt {LINES} ]; do echo \"out $i\"; i=$((i+1)); done; echo 'err last' >&2; echo drained; exit 3"
        );
        let mut child = sh(&script).start().await.expect("spawned");
        let status = child.wait(Duration::from_secs(20)).await.expect("exited");
        assert_eq!(status.code(), Some(3));
        let lines = child.output_lines();
        assert_eq!(lines.len(), LINES + 2, "round {round}: lines missing");
        assert!(lines.iter().any(|l| l == "drained"), "round {round}");
        assert!(lines.iter().any(|l| l == "err last"), "round {round}");
    }
}

#[tokio::test]
async fn kept_lines_are_bounded_and_output_that_is_not_utf8_is_still_read() {
    let mut child =
        sh("printf 'a\\377b\\n'; i=0; while [ $i -lt 100 ]; do echo $i; i=$((i+1)); done")
            .keep_lines(10)
            .start()
            .await
            .expect("spawned");
    child.wait(Duration::from_secs(10)).await.expect("exited");
    let lines = child.output_lines();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines.last().map(String::as_str), Some("99"));

    let mut child = sh("printf 'a\\377b\\n'; echo after")
        .start()
        .await
        .expect("spawned");
    child.wait(Duration::from_secs(10)).await.expect("exited");
    assert_eq!(child.output_lines(), vec!["a\u{FFFD}b", "after"]);
}

#[tokio::test]
async fn the_registry_kills_every_live_child_whoever_owns_it() {
    let registry = Registry::new();
    let mut children: Vec<Child> = Vec::new();
    for i in 0..3 {
        children.push(
            sh("trap '' TERM; while true; do sleep 0.05; done")
                .name(&format!("stubborn-{i}"))
                .register(&registry)
                .start()
                .await
                .expect("spawned"),
        );
    }
    let mut pids: Vec<u32> = children.iter().map(Child::pid).collect();
    pids.sort_unstable();
    let live: Vec<u32> = registry.live().into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(live, pids);
    // One owner reaps its child first: the registry forgets it.
    children[0].kill_and_reap().await.expect("reaped");
    assert_eq!(registry.live().len(), 2);
    assert_eq!(registry.kill_all().len(), 2);
    for child in &mut children {
        let status = child.wait(Duration::from_secs(5)).await.expect("killed");
        assert!(!status.success());
        assert!(is_gone(child.pid()));
    }
    assert!(registry.live().is_empty());
    // A dropped child is killed (kill_on_drop) and leaves the registry.
    let dropped = sh("while true; do sleep 0.05; done")
        .register(&registry)
        .start()
        .await
        .expect("spawned");
    let pid = dropped.pid();
    drop(dropped);
    assert!(registry.live().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !is_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} survived its drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_kill_switch_during_a_graceful_stop_ends_it_at_once() {
    let registry = Registry::new();
    // Listening only once SIGTERM is ignored, so the stop's SIGTERM cannot end it first.
    let mut child = sh(&format!(
        "trap '' TERM; {LISTEN_HTTP}; while true; do sleep 0.05; done"
    ))
    .listening(&["http"], Duration::from_secs(10))
    .register(&registry)
    .start()
    .await
    .expect("spawned");
    let started = std::time::Instant::now();
    let kill = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        registry.kill_all()
    };
    let (outcome, killed) = tokio::join!(child.stop(Duration::from_secs(30)), kill);
    assert_eq!(outcome, StopOutcome::Killed);
    assert_eq!(killed, vec![child.pid()]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(registry.live().is_empty());
}

#[tokio::test]
async fn a_start_error_quotes_every_line_unless_told_fewer() {
    let script = "echo 'error: the reason, first'; i=0; while [ $i -lt 30 ]; do echo \"  at frame $i\"; i=$((i+1)); done; exit 1";
    let err = sh(script)
        .listening(&["http"], Duration::from_secs(10))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the reason, first") && err.contains("frame 29"),
        "{err}"
    );
    let err = sh(script)
        .listening(&["http"], Duration::from_secs(10))
        .quote_lines(5)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("the reason") && err.contains("frame 29"),
        "{err}"
    );
    assert!(
        !err.contains("frame 24") && err.contains("frame 25"),
        "{err}"
    );
}
