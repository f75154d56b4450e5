//! Status codes and validation without a socket: each request goes through the whole application (`consumer::app`:
//! router, observing middleware, token guard) with `tower::ServiceExt::oneshot`. Every field's 422 (field, value,
//! allowed), bad JSON 400, non-object bodies, unknown routes 404, wrong methods 405, the token's 401, the refusals
//! (429 queue full, 503 draining) with `Retry-After`, and the `route` label of what was answered.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use consumer::state::AppState;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{BODY_ENDPOINTS, RANGED_FIELDS};

fn state(args: &[&str]) -> AppState {
    let mut argv = vec!["consumer", "--pod-name", "oneshot-pod"];
    argv.extend_from_slice(args);
    AppState::new(consumer::Config::from_args(argv).expect("valid test config"))
}

/// One request through a fresh copy of the application; status, headers and the body as JSON (a string otherwise).
async fn call(
    state: &AppState,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    let response = consumer::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}

async fn post(
    state: &AppState,
    path: &str,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    call(state, Method::POST, path, body, &[]).await
}

fn assert_field_error(
    answer: &(StatusCode, axum::http::HeaderMap, Value),
    field: &str,
    code: &str,
    value: &Value,
    allowed: &str,
) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["field"], field, "{body}");
    assert_eq!(&body["value"], value, "the value is echoed as sent: {body}");
    assert_eq!(body["allowed"], allowed, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(headers[contract::headers::SERVED_BY], "oneshot-pod");
}

#[tokio::test]
async fn every_ranged_field_answers_422_with_field_value_and_allowed() {
    let _machine = crate::common::shared_machine().await;
    let state = state(&[]);
    for (path, field, min, max) in RANGED_FIELDS {
        let allowed = format!("{min}..={max}");
        for value in [json!(min - 1), json!(max + 1), json!(-7)] {
            let answer = post(&state, path, &json!({ *field: value }).to_string()).await;
            assert_field_error(&answer, field, "out_of_range", &value, &allowed);
        }
        for value in [
            json!("5"),
            json!(true),
            json!([1]),
            json!({"n": 1}),
            json!(2.5),
            json!(1e300),
        ] {
            let answer = post(&state, path, &json!({ *field: value }).to_string()).await;
            assert_field_error(
                &answer,
                field,
                "invalid_type",
                &value,
                &format!("integer {allowed}"),
            );
        }
    }
}

#[tokio::test]
async fn unknown_fields_modes_job_ids_bad_json_and_non_objects_are_refused() {
    let _machine = crate::common::shared_machine().await;
    let state = state(&[]);
    for path in BODY_ENDPOINTS {
        let (status, _, body) = post(&state, path, r#"{"bogus": [1, "x"]}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"], "unknown_field");
        assert_eq!(body["field"], "bogus");
        assert_eq!(body["value"], json!([1, "x"]));
        assert!(body["allowed"].is_string());

        let (status, _, body) = post(&state, path, r#"{"duration_ms": "#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "invalid_json");

        for not_object in ["[1, 2]", "\"text\"", "3"] {
            let (status, _, body) = post(&state, path, not_object).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {not_object}: {body}"
            );
            assert_eq!(body["error"], "invalid_type");
        }
    }
    for path in ["/load/cpu", "/load/memory", "/load/io"] {
        for mode in [json!("later"), json!(1), json!("SYNC")] {
            let answer = post(&state, path, &json!({ "mode": mode }).to_string()).await;
            assert_field_error(
                &answer,
                "mode",
                "invalid_value",
                &mode,
                "\"sync\" | \"async\"",
            );
        }
    }
    let answer = post(&state, "/load/cpu/sustained/stop", r#"{"job_id": "nope"}"#).await;
    assert_field_error(
        &answer,
        "job_id",
        "invalid_value",
        &json!("nope"),
        "a job id (UUID string)",
    );
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/load/cpu/sustained/status?job_id=1",
        "",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "job_id");
}

#[tokio::test]
async fn unknown_routes_404_wrong_methods_405_and_both_are_labelled() {
    let _machine = crate::common::shared_machine().await;
    let state = state(&[]);
    let (status, headers, body) = call(&state, Method::GET, "/nope", "", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert_eq!(headers[contract::headers::SERVED_BY], "oneshot-pod");

    let (status, _, body) = call(&state, Method::GET, "/jobs/not-a-uuid", "", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let unknown = "/jobs/0b7c5e0e-52f6-4d3c-9a55-1f7f2b6f9a10";
    let (status, _, _) = call(&state, Method::DELETE, unknown, "", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, headers, body) = call(&state, Method::PUT, "/load/cpu", "", &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"], "method_not_allowed");
    assert!(
        headers[header::ALLOW].to_str().unwrap().contains("POST"),
        "{headers:?}"
    );

    let exposition = state.metrics.render();
    for series in [
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="/jobs/{id}",status="404"} 1"#,
        r#"http_requests_total{method="DELETE",route="/jobs/{id}",status="404"} 1"#,
        r#"http_requests_total{method="PUT",route="/load/cpu",status="405"} 1"#,
    ] {
        assert!(exposition.contains(series), "{series} in\n{exposition}");
    }
}

#[tokio::test]
async fn the_token_guards_work_routes_with_401_and_never_the_probes() {
    let _machine = crate::common::shared_machine().await;
    let state = state(&["--load-token", "s3cret"]);
    for (method, path) in [
        (Method::POST, "/load/cpu"),
        (Method::POST, "/load/memory"),
        (Method::POST, "/load/io"),
        (Method::POST, "/load/cpu/sustained"),
        (Method::GET, "/load/cpu/sustained/status"),
        (Method::POST, "/load/cpu/sustained/stop"),
        (Method::GET, "/jobs/0b7c5e0e-52f6-4d3c-9a55-1f7f2b6f9a10"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("Basic s3cret")] {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|value| ("authorization", *value)).collect();
            let (status, response_headers, body) =
                call(&state, method.clone(), path, "", &headers).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}: {body}"
            );
            assert_eq!(body["error"], "unauthorized");
            assert_eq!(response_headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/load/io",
        r#"{"delay_ms": 1}"#,
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "io");
    for path in ["/", "/health", "/ready", "/metrics", "/apispec.json"] {
        let (status, _, _) = call(&state, Method::GET, path, "", &[]).await;
        assert_eq!(status, StatusCode::OK, "{path} needs no token");
    }
}

#[tokio::test]
async fn refusals_answer_429_and_503_with_retry_after() {
    let _machine = crate::common::shared_machine().await;
    let state = state(&[
        "--executors",
        "1",
        "--queue-size",
        "1",
        "--memory-budget",
        "64MiB",
    ]);
    let (status, headers, body) = post(
        &state,
        "/load/io",
        r#"{"delay_ms": 60000, "mode": "async"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        headers[header::LOCATION],
        format!("/jobs/{}", body["job_id"].as_str().unwrap())
    );
    let (status, _, _) = post(&state, "/load/io", r#"{"delay_ms": 1, "mode": "async"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the one queue place");
    let (status, headers, body) = post(&state, "/load/cpu", r#"{"mode": "async"}"#).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "queue_full");
    assert_eq!(body["queue_size"], 1);
    assert_eq!(headers[header::RETRY_AFTER], "1");

    let (status, headers, body) = post(&state, "/load/memory", r#"{"size_mb": 65}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "memory_budget_exceeded", "{body}");
    assert_eq!(body["budget_bytes"], 64 << 20);
    assert_eq!(headers[header::RETRY_AFTER], "1");

    state.start_draining();
    let (status, headers, body) = post(&state, "/load/io", r#"{"delay_ms": 1}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "draining");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let (status, _, body) = call(&state, Method::GET, "/ready", "", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"status": "draining"}));
    // Stop the blocker and the queued job.
    state.queue_cancel.cancel();
    state.work_cancel.cancel();
}
