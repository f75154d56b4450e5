//! The web console's runs against the real `lab` binary: a run started over HTTP at time scale 0.1 streams samples
//! and decisions over SSE, obeys a rate change, refuses a second run, stops; its history, CSV, report.json and
//! offline report.html are served again by a new console process on the same runs directory; the demo run (`lab`
//! with the console on) is served live and recorded and ends by itself. [`crate::console_api`] has the checks that
//! start no run.

use std::path::Path;
use std::time::{Duration, Instant};

use contract::listening::kind;
use serde_json::{Value, json};
use testkit::Spawned;

use crate::{binary, heavy};

/// Every request and every wait of these tests is bounded by this.
pub(crate) const STEP: Duration = Duration::from_secs(20);

/// `lab console` on a free port with the real binaries, a short settle and at most 3 replicas.
pub(crate) async fn console(runs: &Path, extra: &[&str]) -> Spawned {
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    let scaledobject =
        testkit::workspace_root().join("manifests/components/keda/scaledobject.yaml");
    let mut args = vec!["console".to_string()];
    if !extra.contains(&"--ui-port") {
        args.extend(["--ui-port".into(), "0".into()]);
    }
    args.extend([
        "--runs-dir".into(),
        runs.display().to_string(),
        "--consumer-bin".into(),
        consumer.display().to_string(),
        "--scaler-bin".into(),
        scaler.display().to_string(),
        "--scaledobject".into(),
        scaledobject.display().to_string(),
        "--settle".into(),
        "3s".into(),
        "--max-replicas".into(),
        "3".into(),
    ]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Spawned::start(env!("CARGO_BIN_EXE_lab"), &args, &[], &[kind::HTTP])
        .await
        .expect("lab console starts and logs `listening`")
}

/// Waits (at most [`STEP`]) until the process has printed a line `wanted` accepts, and says whether it did. The
/// console's URL line goes to stdout and its `listening` line to stderr: two pipes read apart, so the URL line may be
/// read a moment after the listening line the start awaited.
pub(crate) async fn printed(process: &Spawned, wanted: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + STEP;
    loop {
        if process.output_lines().iter().any(|l| wanted(l)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("client")
}

/// A JSON request: (status, body).
pub(crate) async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A server-sent event stream read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(url: &str) -> Events {
        let response = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect("SSE request");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (name, data), or `None` when the stream ended. Panics after `STEP` without one.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if name.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((
                    name,
                    serde_json::from_str(&data).expect("event data is JSON"),
                ));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within the step")
                .expect("stream readable")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// A constant-rate profile: 10 req/s of 20 ms I/O for 600 s (60 s at time scale 0.1), long enough to act on.
pub(crate) const STEADY: &str = "name: steady\ndescription: console test\nstart_rate: 10\nstages:\n- name: hold\n  duration: 600s\n  rate: 10\nrequests:\n- method: POST\n  path: /load/io\n  body: {delay_ms: 20, mode: sync}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_changes_rate_takes_a_fault_refuses_a_second_stops_and_survives_a_restart() {
    let _machine = heavy().await;
    let runs = tempfile::tempdir().expect("temp dir");
    let mut server = console(runs.path(), &[]).await;
    let base = server.url(kind::HTTP);

    let (status, checked) = call(
        "POST",
        &format!("{base}/api/validate"),
        Some(json!({"kind": "profile", "yaml": STEADY})),
    )
    .await;
    assert_eq!(status, 200, "{checked}");
    let (status, meta) = call(
        "POST",
        &format!("{base}/api/runs"),
        Some(json!({"profile_yaml": STEADY, "time_scale": 0.1, "label": "api test"})),
    )
    .await;
    assert_eq!(status, 201, "{meta}");
    let id = meta["id"].as_str().unwrap().to_string();
    assert_eq!(meta["status"], "starting");
    assert_eq!(meta["label"], "api test");
    assert_eq!(meta["profile"], "steady");

    // One run at a time.
    let (status, refused) = call(
        "POST",
        &format!("{base}/api/runs"),
        Some(json!({"profile": "demo"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "run_active");

    let mut events = Events::open(&format!("{base}/api/runs/{id}/events")).await;
    let (name, snapshot) = events.next().await.expect("a first event");
    assert_eq!(name, "snapshot");
    assert_eq!(snapshot["meta"]["id"], id.as_str());
    assert_eq!(
        snapshot["triggers"].as_array().unwrap().len(),
        4,
        "{}",
        snapshot["triggers"]
    );

    // Samples once a second and the controller's decisions, until three samples at the profile's rate.
    let mut samples = Vec::new();
    let mut decisions = 0;
    while samples.len() < 3 {
        let (name, data) = events.next().await.expect("the stream goes on");
        match name.as_str() {
            "sample" => samples.push(data),
            "decision" => {
                decisions += 1;
                assert!(
                    data["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{data}"
                );
            }
            _ => {}
        }
    }
    assert!(decisions >= 1, "no decision in {} samples", samples.len());
    let before = samples.last().unwrap();
    assert_eq!(before["rate_multiplier"], 1.0);
    let offered = before["offered_rps"].as_f64().unwrap();
    assert!((8.0..=12.0).contains(&offered), "offered {offered} at x1");
    assert!(
        before["endpoints"]["/load/io"]["rps"].as_f64().unwrap() > 0.0,
        "{before}"
    );
    assert!(before["replicas"]["current"].as_u64().unwrap() >= 1);

    // Rate x3: within two samples the schedule offers ~30 req/s.
    let (status, changed) = call(
        "POST",
        &format!("{base}/api/runs/{id}/rate"),
        Some(json!({"multiplier": 3})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["rate_multiplier"], 3.0);
    let (status, bad) = call(
        "POST",
        &format!("{base}/api/runs/{id}/rate"),
        Some(json!({"multiplier": 50})),
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(
        (bad["field"].as_str(), bad["allowed"].as_str()),
        (Some("multiplier"), Some("0.1..=10"))
    );
    let mut after = Vec::new();
    while after.len() < 3 {
        let (name, data) = events.next().await.expect("the stream goes on");
        if name == "sample" {
            after.push(data);
        }
    }
    let last = after.last().unwrap();
    assert_eq!(last["rate_multiplier"], 3.0);
    let offered = last["offered_rps"].as_f64().unwrap();
    assert!(
        (26.0..=34.0).contains(&offered),
        "offered {offered} at x3: {after:?}"
    );

    // Chaos from the console: freeze the oldest replica for 1 s; the lab names what it hit, and checks the fields as
    // a profile's chaos list is checked.
    let (status, hit) = call(
        "POST",
        &format!("{base}/api/runs/{id}/chaos"),
        Some(json!({"action": "freeze", "duration_s": 1})),
    )
    .await;
    assert_eq!(status, 202, "{hit}");
    assert!(
        hit["hit"]
            .as_str()
            .is_some_and(|h| h.starts_with("consumer-")),
        "{hit}"
    );
    let (status, bad) = call(
        "POST",
        &format!("{base}/api/runs/{id}/chaos"),
        Some(json!({"action": "freeze"})),
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["field"], "duration_s", "{bad}");
    let (status, bad) = call(
        "POST",
        &format!("{base}/api/runs/{id}/chaos"),
        Some(json!({"action": "kill", "target": "scaler"})),
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["field"], "target", "{bad}");
    // Let the frozen replica come back before the run stops (SIGCONT after 1 s).
    let mut later = 0;
    while later < 3 {
        let (name, _) = events.next().await.expect("the stream goes on");
        later += usize::from(name == "sample");
    }

    // Stop: a stopped status ends the stream.
    let (status, stopping) = call("POST", &format!("{base}/api/runs/{id}/stop"), None).await;
    assert_eq!(status, 202, "{stopping}");
    let mut last_status = None;
    while let Some((name, data)) = events.next().await {
        if name == "status" {
            last_status = Some(data);
        }
    }
    let last_status = last_status.expect("a final status");
    assert_eq!(last_status["status"], "stopped", "{last_status}");
    assert_eq!(last_status["exit_code"], contract::exit::INTERRUPTED);
    let (status, again) = call("POST", &format!("{base}/api/runs/{id}/stop"), None).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = call("POST", &format!("{base}/api/runs/nope/stop"), None).await;
    assert_eq!(status, 404);

    // A new console process on the same directory serves the run from disk.
    server.signal(15);
    let exited = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "lab console exits 0 on SIGTERM"
    );
    let server = console(runs.path(), &[]).await;
    let base = server.url(kind::HTTP);
    let (status, list) = call("GET", &format!("{base}/api/runs"), None).await;
    assert_eq!(status, 200);
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "stopped");
    assert!(
        listed[0]["summary"]["requests"].as_u64().unwrap() > 0,
        "{list}"
    );
    let (status, data) = call("GET", &format!("{base}/api/runs/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(
        data["samples"].as_array().unwrap().len() >= 6,
        "samples {}",
        data["samples"]
    );
    assert!(!data["decisions"].as_array().unwrap().is_empty());
    assert_eq!(
        data["report"]["schema"],
        contract::report::GENERATOR_REPORT_SCHEMA
    );
    // The console's fault is measured in the report like a scheduled one.
    let faults = data["report"]["chaos"]["faults"]
        .as_array()
        .expect("a chaos section");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["action"], "freeze");
    assert_eq!(faults[0]["hit"], hit["hit"]);
    let (status, _) = call(
        "POST",
        &format!("{base}/api/runs/{id}/chaos"),
        Some(json!({"action": "kill"})),
    )
    .await;
    assert_eq!(status, 409, "no fault into a finished run");

    // The finished run's SSE: its snapshot and final status, then the end.
    let mut events = Events::open(&format!("{base}/api/runs/{id}/events")).await;
    assert_eq!(events.next().await.unwrap().0, "snapshot");
    assert_eq!(events.next().await.unwrap().1["status"], "stopped");
    assert!(events.next().await.is_none());

    // Downloads.
    let csv = client()
        .get(format!("{base}/api/runs/{id}/intervals.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "t_s,offered_rps,achieved_rps,ok,errors,dropped,p50_ms,p90_ms,p95_ms,p99_ms,p99_9_ms,max_ms,desired,current,ready,draining,backlog"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), data["samples"].as_array().unwrap().len());
    for row in &rows {
        assert_eq!(row.len(), 17, "{row:?}");
        assert!(
            row[0].parse::<f64>().is_ok() && row[1].parse::<f64>().is_ok(),
            "{row:?}"
        );
    }
    assert!(
        rows.iter().any(|r| r[1].parse::<f64>().unwrap() > 25.0),
        "no row at x3"
    );
    let (status, report) = call("GET", &format!("{base}/api/runs/{id}/report.json"), None).await;
    assert_eq!(status, 200);
    assert_eq!(report["schema"], contract::report::GENERATOR_REPORT_SCHEMA);
    let html = client()
        .get(format!("{base}/api/runs/{id}/report.html"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = html
        .find(r#"<script id="lab-run" type="application/json">"#)
        .expect("the data is inlined");
    let rest = &html[start..];
    let json_text = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    let inlined: Value =
        serde_json::from_str(&json_text.replace("<\\/", "</")).expect("inlined RunData parses");
    assert_eq!(inlined["meta"]["id"], id.as_str());
    for reference in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "/assets/app",
    ] {
        assert!(
            !html.contains(reference),
            "report.html references {reference}"
        );
    }

    // Delete: gone from history and from disk.
    let (status, _) = call("DELETE", &format!("{base}/api/runs/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, gone) = call("GET", &format!("{base}/api/runs/{id}"), None).await;
    assert_eq!(status, 404, "{gone}");
    assert!(!runs.path().join(&id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_run_serves_the_console_records_itself_and_ends_by_itself() {
    let _machine = heavy().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let runs = dir.path().join("runs");
    let out = dir.path().join("out");
    let consumer = binary("LAB_CONSUMER_BIN", "consumer");
    let scaler = binary("LAB_SCALER_BIN", "scaler");
    let scaledobject =
        testkit::workspace_root().join("manifests/components/keda/scaledobject.yaml");
    let started = Instant::now();
    let mut lab = Spawned::start(
        env!("CARGO_BIN_EXE_lab"),
        &[
            "--test",
            "demo",
            "--time-scale",
            "0.1",
            "--settle",
            "3s",
            "--max-replicas",
            "3",
            "--live",
            "plain",
            "--ui-port",
            "0",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--consumer-bin",
            consumer.to_str().unwrap(),
            "--scaler-bin",
            scaler.to_str().unwrap(),
            "--scaledobject",
            scaledobject.to_str().unwrap(),
        ],
        &[],
        &[kind::HTTP],
    )
    .await
    .expect("lab starts its console");
    let base = lab.url(kind::HTTP);
    let line = format!("console: {base}/");
    assert!(
        printed(&lab, |l| l == line).await,
        "no console line: {:?}",
        lab.output_lines()
    );
    let (status, list) = call("GET", &format!("{base}/api/runs"), None).await;
    assert_eq!(status, 200);
    let id = list[0]["id"]
        .as_str()
        .expect("the demo run is listed")
        .to_string();
    let mut events = Events::open(&format!("{base}/api/runs/{id}/events")).await;
    assert_eq!(events.next().await.unwrap().0, "snapshot");
    let mut samples = 0;
    while let Some((name, _)) = events.next().await {
        samples += usize::from(name == "sample");
    }
    assert!(samples >= 5, "{samples} samples");
    let status = lab
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the demo ends by itself");
    assert_eq!(status.code(), Some(0), "{:?}", lab.output_lines());
    assert!(started.elapsed() < Duration::from_secs(90));
    // --out works as before, and the run is in the history.
    assert!(out.join("report.json").is_file() && out.join("summary.txt").is_file());
    let meta: Value =
        serde_json::from_slice(&std::fs::read(runs.join(&id).join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "finished");
    assert_eq!(meta["exit_code"], 0);
    assert!(runs.join(&id).join("report.json").is_file());
    assert!(
        meta["summary"]["max_replicas_seen"].as_u64().unwrap() >= 2,
        "{meta}"
    );
}
