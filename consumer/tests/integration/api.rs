//! The HTTP API, in process on 127.0.0.1: every endpoint, every field boundary (below, at, above; wrong types;
//! unknown fields; bad JSON), identity and probes, the token, the OpenAPI document and the offline Swagger UI.

use std::time::Duration;

use crate::common::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// (path, field, min, max)
pub(crate) const RANGED_FIELDS: &[(&str, &str, u64, u64)] = &[
    ("/load/cpu", "duration_ms", 1, 10_000),
    ("/load/cpu", "complexity", 1, 10),
    ("/load/memory", "size_mb", 1, 2048),
    ("/load/memory", "duration_ms", 1, 120_000),
    ("/load/io", "delay_ms", 1, 60_000),
    ("/load/cpu/sustained", "workers", 1, 4),
    ("/load/cpu/sustained", "duration_seconds", 1, 300),
    ("/load/cpu/sustained", "complexity", 1, 10),
];

pub(crate) const BODY_ENDPOINTS: &[&str] = &[
    "/load/cpu",
    "/load/memory",
    "/load/io",
    "/load/cpu/sustained",
    "/load/cpu/sustained/stop",
];

pub(crate) fn assert_field_error(
    status: StatusCode,
    body: &Value,
    field: &str,
    code: &str,
    context: &str,
) {
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{context}: {body}"
    );
    assert_eq!(body["error"], code, "{context}: {body}");
    assert_eq!(body["field"], field, "{context}: {body}");
    assert!(
        body.get("value").is_some(),
        "{context}: the value is echoed: {body}"
    );
    assert!(
        body["allowed"].is_string(),
        "{context}: the allowed range is named: {body}"
    );
    assert!(body["message"].is_string(), "{context}: {body}");
}

#[tokio::test]
async fn out_of_range_and_wrong_type_fields_get_422_naming_field_value_and_range() {
    let server = Server::start(&[]).await;
    for (path, field, min, max) in RANGED_FIELDS {
        let context = format!("{path} {field}");
        let (status, _, body) = server
            .post(path, &json!({ *field: min - 1 }).to_string())
            .await;
        assert_field_error(
            status,
            &body,
            field,
            "out_of_range",
            &format!("{context} below"),
        );
        assert_eq!(body["value"], json!(min - 1));
        assert_eq!(body["allowed"], format!("{min}..={max}"));

        let (status, _, body) = server
            .post(path, &json!({ *field: max + 1 }).to_string())
            .await;
        assert_field_error(
            status,
            &body,
            field,
            "out_of_range",
            &format!("{context} above"),
        );
        assert_eq!(body["value"], json!(max + 1));

        let (status, _, body) = server.post(path, &json!({ *field: -1 }).to_string()).await;
        assert_field_error(
            status,
            &body,
            field,
            "out_of_range",
            &format!("{context} negative"),
        );

        for wrong in [
            json!("5"),
            json!(true),
            json!([1]),
            json!({"n": 1}),
            json!(1.5),
        ] {
            let (status, _, body) = server
                .post(path, &json!({ *field: wrong.clone() }).to_string())
                .await;
            assert_field_error(
                status,
                &body,
                field,
                "invalid_type",
                &format!("{context} wrong type {wrong}"),
            );
            assert_eq!(body["value"], wrong);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_fields_bad_modes_and_bad_json_are_refused_on_every_body_endpoint() {
    let server = Server::start(&[]).await;
    for path in BODY_ENDPOINTS {
        let (status, _, body) = server.post(path, r#"{"bogus": 1}"#).await;
        assert_field_error(status, &body, "bogus", "unknown_field", path);

        let (status, _, body) = server.post(path, r#"{"duration_ms": "#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "invalid_json", "{path}: {body}");

        let (status, _, body) = server.post(path, "[1, 2]").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"], "invalid_type", "{path}: {body}");
    }
    for path in ["/load/cpu", "/load/memory", "/load/io"] {
        for mode in [json!("later"), json!(1), json!("SYNC")] {
            let (status, _, body) = server
                .post(path, &json!({ "mode": mode }).to_string())
                .await;
            assert_field_error(status, &body, "mode", "invalid_value", path);
        }
    }
    let (status, _, body) = server
        .post("/load/cpu/sustained/stop", r#"{"job_id": "not-a-uuid"}"#)
        .await;
    assert_field_error(status, &body, "job_id", "invalid_value", "stop job_id");
    server.stop().await;
}

#[tokio::test]
async fn minimum_values_and_empty_bodies_run_sync() {
    let server = Server::start(&[]).await;
    let (status, headers, body) = server
        .post("/load/cpu", r#"{"duration_ms": 1, "complexity": 1}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-served-by"], "test-pod");
    assert_eq!(body["kind"], "cpu");
    assert_eq!(
        body["request"],
        json!({"duration_ms": 1, "complexity": 1, "mode": "sync"})
    );
    assert!(
        body["result"]["cpu_seconds"].as_f64().unwrap() >= 0.001,
        "{body}"
    );
    assert!(
        body["result"]["iterations"].as_u64().unwrap() >= 1,
        "{body}"
    );

    // Empty body and null: every default applies (cpu: 100 ms of CPU at complexity 5).
    for empty in ["", "null", "{}"] {
        let (status, _, body) = server.post("/load/cpu", empty).await;
        assert_eq!(status, StatusCode::OK, "{empty:?}: {body}");
        assert_eq!(
            body["request"],
            json!({"duration_ms": 100, "complexity": 5, "mode": "sync"})
        );
        let cpu = body["result"]["cpu_seconds"].as_f64().unwrap();
        assert!((0.1..0.15).contains(&cpu), "cpu burn accurate: {body}");
    }

    let (status, _, body) = server
        .post("/load/memory", r#"{"size_mb": 1, "duration_ms": 1}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["size_bytes"], 1 << 20);

    let (status, _, body) = server.post("/load/io", r#"{"delay_ms": 1}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["completed"], true);

    let (status, _, body) = server.post("/load/io", r#"{}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let waited = body["result"]["waited_seconds"].as_f64().unwrap();
    assert!((0.1..0.5).contains(&waited), "default delay 100 ms: {body}");

    let (status, _, body) = server
        .post(
            "/load/cpu/sustained",
            r#"{"workers": 1, "duration_seconds": 1, "complexity": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["job_id"].as_str().unwrap().to_owned();
    let job = server.wait_job(&id, Duration::from_secs(10)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "sustained");
    // Sustained workers run at nice 19: on a busy shared machine they may get little CPU, so only require some.
    assert!(
        job["result"]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{job}"
    );
    assert!(
        job["result"]["wall_seconds"].as_f64().unwrap() >= 1.0,
        "{job}"
    );
    server.stop().await;
}

#[tokio::test]
async fn maximum_values_are_accepted() {
    // One executor held by a long I/O job keeps every max-size job queued, so nothing heavy actually runs.
    let server = Server::start(&["--executors", "1", "--memory-budget", "3GiB"]).await;
    let (status, _, blocker) = server
        .post("/load/io", r#"{"delay_ms": 60000, "mode": "async"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{blocker}");
    let blocker = blocker["job_id"].as_str().unwrap().to_owned();

    let bodies = [
        (
            "/load/cpu",
            json!({"duration_ms": 10000, "complexity": 10, "mode": "async"}),
        ),
        (
            "/load/memory",
            json!({"size_mb": 2048, "duration_ms": 120000, "mode": "async"}),
        ),
        ("/load/io", json!({"delay_ms": 60000, "mode": "async"})),
    ];
    for (path, body) in bodies {
        let (status, headers, accepted) = server.post(path, &body.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {accepted}");
        let id = accepted["job_id"].as_str().unwrap();
        assert_eq!(headers["location"], format!("/jobs/{id}"));
        let (status, _, job) = server.get(&format!("/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["request"], body);
        let (status, _, _) = server.delete(&format!("/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        let job = server.wait_job(id, Duration::from_secs(5)).await;
        assert_eq!(job["state"], "cancelled", "{job}");
    }

    let (status, _, body) = server
        .post(
            "/load/cpu/sustained",
            r#"{"workers": 4, "duration_seconds": 300, "complexity": 10}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _, stopped) = server.post("/load/cpu/sustained/stop", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stopped["stopped"], json!([body["job_id"]]));
    let job = server
        .wait_job(body["job_id"].as_str().unwrap(), Duration::from_secs(5))
        .await;
    assert_eq!(job["state"], "cancelled");

    server.delete(&format!("/jobs/{blocker}")).await;
    server.stop().await;
}

#[tokio::test]
async fn root_probes_metrics_and_errors_carry_served_by() {
    let server = Server::start(&[
        "--executors",
        "3",
        "--queue-size",
        "7",
        "--memory-budget",
        "100MiB",
    ])
    .await;
    let (status, headers, root) = server.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-served-by"], "test-pod");
    assert_eq!(root["name"], "consumer");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root["pod"], "test-pod");
    assert_eq!(root["limits"]["executors"], 3);
    assert_eq!(root["limits"]["queue_size"], 7);
    assert_eq!(root["limits"]["memory_budget_bytes"], 100 << 20);
    assert!(root["uptime_seconds"].as_f64().unwrap() >= 0.0);

    let (status, _, body) = server.get("/health").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _, body) = server.get("/ready").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));

    let (status, headers, body) = server.get("/no/such/path").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-served-by"], "test-pod");
    assert_eq!(body["error"], "not_found");
    let response = server
        .client
        .put(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["x-served-by"], "test-pod");
    let (status, _, body) = server.get("/jobs/not-a-job").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = server.get(&format!("/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, headers, _) = server.post("/load/io", r#"{"delay_ms": 0}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["x-served-by"], "test-pod");

    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"http_requests_total{method="GET",route="/health",status="200"} "#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="/jobs/{id}",status="404"} 2"#,
        r#"http_requests_total{method="POST",route="/load/io",status="422"} 1"#,
        r#"http_requests_total{method="PUT",route="/health",status="405"} 1"#,
        "consumer_executors 3",
        "consumer_memory_budget_bytes 104857600",
        r#"consumer_build_info{version="0.1.0"} 1"#,
        r#"consumer_jobs_total{kind="cpu",mode="sync",outcome="done"} 0"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(!text.contains("not-a-job"), "raw paths never become labels");
    for name in [
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "consumer_jobs_queued",
        "consumer_jobs_running",
        "consumer_job_duration_seconds_bucket",
        "consumer_job_queue_wait_seconds_bucket",
        "consumer_cpu_burn_seconds_total",
        "consumer_memory_held_bytes",
        "consumer_sustained_workers",
        "consumer_allocations_total",
        "consumer_allocated_bytes_total",
        "consumer_heap_bytes",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    assert!(
        text.contains(r#"le="0.005""#) && text.contains(r#"le="2""#) && text.contains(r#"le="30""#)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_load_token_guards_load_and_jobs_but_not_probes() {
    let server = Server::start(&["--load-token", "s3cret"]).await;
    let (status, headers, body) = server.post("/load/io", r#"{"delay_ms": 1}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let wrong = server
        .client
        .post(server.url("/load/io"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = server
        .client
        .post(server.url("/load/io"))
        .bearer_auth("s3cret")
        .body(r#"{"delay_ms": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let (status, _, _) = server.get(&format!("/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = server.get("/load/cpu/sustained/status").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for open in ["/", "/health", "/ready", "/metrics", "/apispec.json"] {
        let (status, _, _) = server.get(open).await;
        assert_eq!(status, StatusCode::OK, "{open} stays open");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_has_every_route_range_and_the_docs_page_is_self_contained() {
    let server = Server::start(&[]).await;
    let (status, _, spec) = server.get("/apispec.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/",
        "/health",
        "/ready",
        "/metrics",
        "/load/cpu",
        "/load/memory",
        "/load/io",
        "/load/cpu/sustained",
        "/load/cpu/sustained/status",
        "/load/cpu/sustained/stop",
        "/jobs/{id}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    let cpu = &spec["components"]["schemas"]["CpuLoadRequest"]["properties"];
    assert_eq!(cpu["duration_ms"]["minimum"], 1);
    assert_eq!(cpu["duration_ms"]["maximum"], 10000);
    assert_eq!(cpu["duration_ms"]["default"], 100);
    let memory = &spec["components"]["schemas"]["MemoryLoadRequest"]["properties"];
    assert_eq!(memory["size_mb"]["maximum"], 2048);
    let responses = &spec["paths"]["/load/cpu"]["post"]["responses"];
    for code in ["200", "202", "400", "401", "422", "429", "503"] {
        assert!(responses.get(code).is_some(), "/load/cpu documents {code}");
    }
    assert!(
        spec["components"]["securitySchemes"]
            .get("bearer")
            .is_some()
    );

    let page = server
        .client
        .get(server.url("/apidocs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "no asset comes from the internet"
    );
    let css = server
        .client
        .get(server.url("/apidocs/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    let config = server
        .client
        .get(server.url("/apidocs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/apispec.json"), "{config}");
    server.stop().await;
}
