//! The web console's API where no run starts, against the real `lab` binary: bad input gets the JSON error shape with
//! field, value and allowed (and the YAML's line), the token guards the API and a non-loopback address needs one, a
//! busy port falls back to a free one, `--ui-assets` serves the page from a directory.

use contract::listening::kind;
use serde_json::{Value, json};

use crate::console::{STEADY, STEP, call, client, console, printed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_json_error_with_field_value_and_allowed() {
    let runs = tempfile::tempdir().expect("temp dir");
    let server = console(runs.path(), &[]).await;
    let base = server.url(kind::HTTP);
    let runs_url = format!("{base}/api/runs");
    for (body, field, allowed) in [
        (
            json!({"time_scale": 0.001}),
            "time_scale",
            Some("0.01..=10"),
        ),
        (
            json!({"time_scale": "fast"}),
            "time_scale",
            Some("0.01..=10"),
        ),
        (
            json!({"rate_multiplier": 11}),
            "rate_multiplier",
            Some("0.1..=10"),
        ),
        (json!({"max_replicas": 0}), "max_replicas", Some("1..=64")),
        (json!({"duration_s": -1}), "duration_s", Some("1..=86400")),
        (json!({"profile": "nope"}), "profile", None),
        (json!({"slo": "p97<1ms"}), "slo", None),
        (json!({"colour": "red"}), "colour", None),
        (
            json!({"profile": "demo", "profile_yaml": STEADY}),
            "profile_yaml",
            None,
        ),
    ] {
        let (status, error) = call("POST", &runs_url, Some(body.clone())).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["error"], "invalid_field", "{error}");
        assert_eq!(error["field"], field, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error.get("value").is_some(), "{error}");
        if let Some(allowed) = allowed {
            assert_eq!(error["allowed"], allowed, "{error}");
        }
    }
    // YAML the parser rejects: its line and column.
    let (status, error) = call(
        "POST",
        &runs_url,
        Some(json!({"profile_yaml": "name: x\nstages:\n  - rate: [oops\n"})),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(
        (error["error"].as_str(), error["field"].as_str()),
        (Some("invalid_yaml"), Some("profile_yaml"))
    );
    assert!(error["line"].as_u64().is_some(), "{error}");
    let (status, error) = call(
        "POST",
        &format!("{base}/api/validate"),
        Some(json!({"kind": "scaledobject", "yaml": "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: c}\n  maxReplicaCount: many\n"})),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"], "invalid_yaml");
    assert!(error["line"].as_u64().is_some(), "{error}");
    let (status, error) = call(
        "POST",
        &format!("{base}/api/validate"),
        Some(json!({"kind": "deployment", "yaml": ""})),
    )
    .await;
    assert_eq!((status, error["field"].as_str()), (422, Some("kind")));
    let (status, ok) = call("GET", &format!("{base}/api/scaledobject"), None).await;
    assert_eq!(status, 200);
    let (status, valid) = call(
        "POST",
        &format!("{base}/api/validate"),
        Some(json!({"kind": "scaledobject", "yaml": ok["yaml"]})),
    )
    .await;
    assert_eq!(status, 200, "{valid}");
    // Not JSON at all.
    let response = client().post(&runs_url).body("{nope").send().await.unwrap();
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        (error["error"].as_str(), error["line"].as_u64()),
        (Some("invalid_json"), Some(1))
    );
    // Unknown things.
    let (status, error) = call(
        "GET",
        &format!("{base}/api/runs/20990101-000000-none"),
        None,
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (404, Some("not_found")));
    let (status, _) = call("GET", &format!("{base}/api/runs/..%2Fetc"), None).await;
    assert_eq!(status, 404);
    // Nothing was started by any of it.
    let (_, list) = call("GET", &runs_url, None).await;
    assert_eq!(list, json!([]));
    // The document of the API and the page.
    let (status, doc) = call("GET", &format!("{base}/api/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/api/runs/{id}/events"].is_object(),
        "{}",
        doc["paths"]
    );
    let page = client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_the_api_and_other_hosts_need_one() {
    let runs = tempfile::tempdir().expect("temp dir");
    let server = console(runs.path(), &["--ui-token", "s3cret"]).await;
    let base = server.url(kind::HTTP);
    assert!(
        printed(&server, |l| l.ends_with("/#token=s3cret")).await,
        "{:?}",
        server.output_lines()
    );
    let (status, error) = call("GET", &format!("{base}/api/runs"), None).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = client()
        .get(format!("{base}/api/runs"))
        .header("x-lab-token", "s3creT")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(format!("{base}/api/runs"))
        .header("x-lab-token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let (status, _) = call("GET", &format!("{base}/api/runs?token=s3cret"), None).await;
    assert_eq!(status, 200);
    // A state-changing request only by header: a link with ?token= starts nothing.
    let (status, _) = call(
        "POST",
        &format!("{base}/api/runs?token=s3cret"),
        Some(json!({"time_scale": 99})),
    )
    .await;
    assert_eq!(status, 401);
    let by_header = client()
        .post(format!("{base}/api/runs"))
        .header("x-lab-token", "s3cret")
        .json(&json!({"time_scale": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_header.status(),
        422,
        "the request got past the guard to validation"
    );
    // The page itself is not behind the token (it reads the token from its URL).
    assert_eq!(
        client()
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Any address but loopback without a token: refused at start, usage exit code.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args([
            "console",
            "--ui-host",
            "0.0.0.0",
            "--ui-port",
            "0",
            "--runs-dir",
        ])
        .arg(runs.path())
        .output();
    let output = tokio::time::timeout(STEP, output)
        .await
        .expect("exits at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(contract::exit::USAGE));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--ui-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_falls_back_to_a_free_one() {
    let runs = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let server = console(runs.path(), &["--ui-port", &port]).await;
    assert_ne!(server.addr(kind::HTTP).port().to_string(), port);
    assert!(
        server
            .output_lines()
            .iter()
            .any(|l| l.contains(&format!("port {port} is in use"))),
        "{:?}",
        server.output_lines()
    );
    let (status, health) = call(
        "GET",
        &format!("{}/api/health", server.url(kind::HTTP)),
        None,
    )
    .await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_assets_serves_the_page_from_a_directory_and_refuses_one_without_it() {
    let runs = tempfile::tempdir().expect("temp dir");
    let page = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(page.path().join("assets")).unwrap();
    std::fs::write(
        page.path().join("index.html"),
        "<html><body>from a directory</body></html>",
    )
    .unwrap();
    std::fs::write(page.path().join("assets/app.js"), "let fromDir = 1;").unwrap();
    let server = console(runs.path(), &["--ui-assets", page.path().to_str().unwrap()]).await;
    let base = server.url(kind::HTTP);
    let index = client()
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(index, "<html><body>from a directory</body></html>");
    let js = client()
        .get(format!("{base}/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(js.text().await.unwrap(), "let fromDir = 1;");
    let (status, missing) = call("GET", &format!("{base}/assets/nope.js"), None).await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("not_found"))
    );

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["console", "--ui-port", "0", "--ui-assets"])
        .arg(runs.path())
        .arg("--runs-dir")
        .arg(runs.path())
        .output();
    let output = tokio::time::timeout(STEP, output)
        .await
        .expect("exits at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(contract::exit::USAGE));
    assert!(String::from_utf8_lossy(&output.stderr).contains("scripts/console.sh"));
}
