//! `--monitor` against a stand-in Kubernetes API (the one fake allowed: no cluster runs here). The stand-in serves the
//! consumer Deployment, its KEDA HPA and ScaledObject as JSON whose replica counts follow a script over time; the
//! generator's report must place the scale-up decision, the first new ready replica, the peak and the scale-down where
//! the script put them.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use generator::monitor::{FallbackSource, KubeSource, KubeTarget, ReplicaSource};
use generator::profile::{RequestSpec, Stage};
use generator::{Profile, RunOptions, TargetSet};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// (desired, current, ready) at `t` seconds: 1 replica, then at 1.0 s the HPA wants 3 (pods created, not ready), at
/// 2.0 s all 3 are ready, at 4.5 s (0.5 s after the load drops) back to 1.
fn script(t: f64) -> (i32, i32, i32) {
    if t < 1.0 {
        (1, 1, 1)
    } else if t < 2.0 {
        (3, 3, 1)
    } else if t < 4.5 {
        (3, 3, 3)
    } else {
        (1, 1, 1)
    }
}

async fn stand_in() -> (String, Arc<Instant>) {
    let start = Arc::new(Instant::now());
    async fn deployment(
        State(s): State<Arc<Instant>>,
        Path((ns, name)): Path<(String, String)>,
    ) -> Response {
        if ns != "lab" || name != "consumer" {
            return (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("deployments.apps \"{name}\" not found")}))).into_response();
        }
        let (desired, current, ready) = script(s.elapsed().as_secs_f64());
        Json(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": desired, "selector": {"matchLabels": {"app": "consumer"}},
                     "template": {"metadata": {"labels": {"app": "consumer"}}}},
            "status": {"replicas": current, "readyReplicas": ready, "availableReplicas": ready}
        }))
        .into_response()
    }
    async fn hpa(
        State(s): State<Arc<Instant>>,
        Path((ns, name)): Path<(String, String)>,
    ) -> Response {
        let (desired, current, _) = script(s.elapsed().as_secs_f64());
        Json(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"maxReplicas": 10, "minReplicas": 1,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"}},
            "status": {"currentReplicas": current, "desiredReplicas": desired,
                       "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .into_response()
    }
    async fn scaled_object(
        State(s): State<Arc<Instant>>,
        Path((ns, name)): Path<(String, String)>,
    ) -> Response {
        let (desired, _, _) = script(s.elapsed().as_secs_f64());
        Json(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"scaleTargetRef": {"name": "consumer"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Active", "status": if desired > 1 { "True" } else { "False" }},
                {"type": "Fallback", "status": "False"}]}
        }))
        .into_response()
    }
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(deployment),
        )
        .route(
            "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}",
            get(hpa),
        )
        .route(
            "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/{name}",
            get(scaled_object),
        )
        .with_state(start.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, start)
}

fn kube_target() -> KubeTarget {
    KubeTarget {
        namespace: "lab".into(),
        deployment: "consumer".into(),
        hpa: Some("keda-hpa-consumer".into()),
        scaled_object: Some("consumer".into()),
    }
}

fn two_phase_profile() -> Profile {
    let mut p = Profile::constant(
        100.0,
        Duration::from_secs(4),
        RequestSpec::new("GET", "/health", None),
    );
    p.stages.push(Stage {
        name: Some("low".into()),
        duration: Duration::from_secs(2),
        rate: 5.0,
        ramp: false,
    });
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_scale_and_peak_come_out_of_the_kubernetes_api() {
    let _cpu = common::shared().await;
    let consumer = common::start_consumer("mon-pod", &[]).await;
    let (api, _start) = stand_in().await;
    let source: Arc<dyn ReplicaSource> =
        Arc::new(KubeSource::for_url(&api, kube_target()).unwrap());
    let report = common::run_load(
        two_phase_profile(),
        TargetSet::single(&consumer.url).unwrap(),
        RunOptions {
            monitor_interval: Duration::from_millis(100),
            ..RunOptions::default()
        },
        Some(source),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // Shown with --nocapture; docs/generator.md quotes it.
    println!("{}", report.render_summary());
    let s = report.scaling.as_ref().expect("scaling report");
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 0.35);
    assert_eq!(s.initial_replicas, Some(1));
    assert_eq!(s.peak_replicas, Some(3));
    assert!(near(s.peak_at_s, 1.0), "peak at {:?}", s.peak_at_s);
    assert!(
        near(s.time_to_scale_s, 1.0),
        "time to scale {:?}",
        s.time_to_scale_s
    );
    assert!(
        near(s.time_to_first_new_ready_s, 2.0),
        "first ready {:?}",
        s.time_to_first_new_ready_s
    );
    assert!(
        (s.load_end_s - 4.0).abs() < 0.15,
        "load end {}",
        s.load_end_s
    );
    assert!(
        near(s.time_to_scale_down_s, 0.5),
        "scale down {:?}",
        s.time_to_scale_down_s
    );
    assert!(s.observations >= 40, "{} observations", s.observations);
    assert_eq!(s.observation_errors, 0, "{:?}", s.last_error);
    // No SLO (nor capacity) here: nothing is judged under-provisioned, so every observed interval is steady.
    assert!(
        s.during_scale_up.intervals == 0 && s.steady.intervals >= 5,
        "{s:?}"
    );
    assert!(
        s.replica_seconds > 6.0 && s.replica_seconds < 15.0,
        "{}",
        s.replica_seconds
    );
    let details: Vec<String> = s
        .timeline
        .iter()
        .filter_map(|p| p.snapshot.detail.clone())
        .collect();
    assert!(
        details.first().is_some_and(|d| d.contains("Active=False")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("Active=True")),
        "{details:?}"
    );
    // Intervals carry the replicas, and the terminal chart has a replicas row.
    assert!(report.intervals.iter().all(|i| i.replicas.is_some()));
    assert!(report.render_timeline(60).contains("replicas"));
    assert!(report.render_svg().contains("replicas"));
    // Thresholds on the scaling figures.
    let mut r = report.clone();
    let t = [
        generator::threshold::Threshold::parse("time_to_scale<2s").unwrap(),
        generator::threshold::Threshold::parse("peak_replicas>=3").unwrap(),
    ];
    generator::app::judge(&mut r, &t);
    assert_eq!(r.exit_code, 0, "{}", r.verdict);
    let t = [generator::threshold::Threshold::parse("time_to_scale<0.5s").unwrap()];
    generator::app::judge(&mut r, &t);
    assert_eq!(r.exit_code, 1, "{}", r.verdict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_falls_through_to_the_next_source() {
    let _cpu = common::shared().await;
    let (api, _start) = stand_in().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let chain = FallbackSource::new(vec![
        Arc::new(KubeSource::for_url(&dead, kube_target()).unwrap()),
        Arc::new(KubeSource::for_url(&api, kube_target()).unwrap()),
    ]);
    let snap = chain.observe().await.unwrap();
    assert_eq!(snap.source, "kubernetes");
    assert_eq!(snap.current, Some(1));
    let mut wrong = kube_target();
    wrong.deployment = "missing".into();
    let err = KubeSource::for_url(&api, wrong)
        .unwrap()
        .observe()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
