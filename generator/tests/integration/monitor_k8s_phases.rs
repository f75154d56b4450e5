//! The scaling analysis of a `--monitor` run on a cluster, against a stand-in Kubernetes API replaying a recorded
//! scale-up (1 -> 3): the HPA's `desiredReplicas` and `lastScaleTime`, a `SuccessfulRescale` Event, the new pods'
//! Ready transitions at known times and a Deployment whose `readyReplicas` lags them, while a real consumer takes load
//! slower than the SLO. The event's decision must be the Event's time, its ready milestone the pods' Ready
//! transitions, and an API that forbids Events must still give an event, from the observations, and say so.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use generator::monitor::{KubeSource, KubeTarget, ReplicaSource};
use generator::profile::RequestSpec;
use generator::report::scaling_timeline::{DECISIONS_FROM_EVENTS, DECISIONS_FROM_OBSERVATIONS};
use generator::{Profile, RunOptions, TargetSet};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Seconds after the stand-in's start: the HPA decides (Event and lastScaleTime) at 0.8 s and the monitor sees
/// `desiredReplicas` 3 from 1.0 s; the new pods are created at 1.0 s and turn Ready at 1.6 s and 1.9 s; the
/// Deployment reports them ready only from 2.5 s.
const DECIDED: f64 = 0.8;
const SEEN_DESIRED: f64 = 1.0;
const READY_B: f64 = 1.6;
const READY_C: f64 = 1.9;
const DEPLOYMENT_READY: f64 = 2.5;

struct Script {
    start: Instant,
    wall: SystemTime,
    forbid_events: bool,
}

impl Script {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    fn time(&self, offset_s: f64) -> String {
        let t = if offset_s >= 0.0 {
            self.wall + Duration::from_secs_f64(offset_s)
        } else {
            self.wall - Duration::from_secs_f64(-offset_s)
        };
        humantime::format_rfc3339_millis(t).to_string()
    }
}

fn pod(s: &Script, name: &str, created: f64, ready: Option<f64>) -> Value {
    let condition = match ready {
        Some(at) if s.now() >= at => {
            json!({"type": "Ready", "status": "True", "lastTransitionTime": s.time(at)})
        }
        _ => json!({"type": "Ready", "status": "False", "lastTransitionTime": s.time(created)}),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "lab", "labels": {"app": "consumer"},
                        "creationTimestamp": s.time(created)},
           "spec": {"containers": [{"name": "consumer", "image": "consumer"}]},
           "status": {"phase": "Running", "conditions": [condition]}})
}

async fn stand_in(forbid_events: bool) -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        start: Instant::now(),
        wall: SystemTime::now(),
        forbid_events,
    });
    async fn deployment(State(s): State<Arc<Script>>) -> Response {
        let t = s.now();
        let desired = if t >= SEEN_DESIRED { 3 } else { 1 };
        let ready = if t >= DEPLOYMENT_READY { 3 } else { 1 };
        Json(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "consumer", "namespace": "lab"},
            "spec": {"replicas": desired, "selector": {"matchLabels": {"app": "consumer"}},
                     "template": {"metadata": {"labels": {"app": "consumer"}}}},
            "status": {"replicas": desired, "readyReplicas": ready}
        }))
        .into_response()
    }
    async fn hpa(State(s): State<Arc<Script>>) -> Response {
        let scaled = s.now() >= SEEN_DESIRED;
        let mut status =
            json!({"currentReplicas": 1, "desiredReplicas": if scaled { 3 } else { 1 }});
        if scaled {
            status["lastScaleTime"] = json!(s.time(DECIDED));
        }
        Json(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keda-hpa-consumer", "namespace": "lab"},
            "spec": {"maxReplicas": 10, "minReplicas": 1,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"}},
            "status": status
        }))
        .into_response()
    }
    async fn scaled_object() -> Response {
        Json(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "consumer", "namespace": "lab"},
            "spec": {"scaleTargetRef": {"name": "consumer"}, "pollingInterval": 1, "minReplicaCount": 1,
                     "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {
                         "stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]}}}},
                     "triggers": [{"type": "external", "name": "request-rate",
                                   "metadata": {"scalerAddress": "scaler:9090", "window": "30s"}}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .into_response()
    }
    async fn pods(State(s): State<Arc<Script>>) -> Response {
        let mut items = vec![pod(&s, "consumer-a", -60.0, Some(-50.0))];
        if s.now() >= SEEN_DESIRED {
            items.push(pod(&s, "consumer-b", SEEN_DESIRED, Some(READY_B)));
            items.push(pod(&s, "consumer-c", SEEN_DESIRED, Some(READY_C)));
        }
        Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}))
            .into_response()
    }
    async fn events(State(s): State<Arc<Script>>) -> Response {
        if s.forbid_events {
            return (StatusCode::FORBIDDEN, Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": "events is forbidden: User \"system:serviceaccount:lab:load-generator\" cannot list resource \"events\""})))
                .into_response();
        }
        let event = |name: &str, at: f64, message: &str| {
            json!({"apiVersion": "v1", "kind": "Event",
                   "metadata": {"name": name, "namespace": "lab", "uid": name},
                   "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": "keda-hpa-consumer", "namespace": "lab"},
                   "reason": "SuccessfulRescale", "message": message, "type": "Normal", "count": 1,
                   "firstTimestamp": s.time(at), "lastTimestamp": s.time(at)})
        };
        // A previous run's event, which the report must ignore.
        let mut items = vec![event(
            "old",
            -600.0,
            "New size: 5; reason: external metric s0-request-rate above target",
        )];
        if s.now() >= DECIDED {
            items.push(event("up", DECIDED, "New size: 3; reason: external metric s0-request-rate(&LabelSelector{MatchLabels:map[scaledobject.keda.sh/name:consumer]}) above target"));
        }
        Json(json!({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "1"}, "items": items}))
            .into_response()
    }
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/lab/deployments/consumer",
            get(deployment),
        )
        .route(
            "/apis/autoscaling/v2/namespaces/lab/horizontalpodautoscalers/keda-hpa-consumer",
            get(hpa),
        )
        .route(
            "/apis/keda.sh/v1alpha1/namespaces/lab/scaledobjects/consumer",
            get(scaled_object),
        )
        .route("/api/v1/namespaces/lab/pods", get(pods))
        .route("/api/v1/namespaces/lab/events", get(events))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, script)
}

/// Run 3 s of load slower than the SLO (25 ms answers, `p95<10ms`) against a real consumer, observing the stand-in.
async fn run(forbid_events: bool) -> (generator::Report, Arc<Script>) {
    let consumer = common::start_consumer("consumer-a", &[]).await;
    let (api, script) = stand_in(forbid_events).await;
    let target = KubeTarget {
        namespace: "lab".into(),
        deployment: "consumer".into(),
        hpa: Some("keda-hpa-consumer".into()),
        scaled_object: Some("consumer".into()),
    };
    let source: Arc<dyn ReplicaSource> = Arc::new(KubeSource::for_url(&api, target).unwrap());
    let profile = Profile::constant(
        40.0,
        Duration::from_secs(3),
        RequestSpec::new("POST", "/load/io", Some(json!({"delay_ms": 25}))),
    );
    let report = common::run_load(
        profile,
        TargetSet::single(&consumer.url).unwrap(),
        RunOptions {
            monitor_interval: Duration::from_millis(100),
            slo: Some(timeline::Slo::parse("p95<10ms").unwrap()),
            ..RunOptions::default()
        },
        Some(source),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    (report, script)
}

/// Seconds since the load started of the stand-in's `offset_s`.
fn since_load(report: &generator::Report, script: &Script, offset_s: f64) -> f64 {
    let started = humantime::parse_rfc3339(&report.started_at).unwrap();
    let at = script.wall + Duration::from_secs_f64(offset_s);
    match at.duration_since(started) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn at(e: &timeline::ScaleEvent, name: timeline::PhaseName) -> Option<f64> {
    e.phases
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.at_s)
}

fn phases_sum_to_total(e: &timeline::ScaleEvent) {
    let sum: f64 = e.phases.iter().filter_map(|p| p.duration_s).sum();
    let total = e.total_s.expect("a total");
    assert!(
        (sum - total).abs() < 1e-9,
        "phases {sum} vs total {total}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scale_up_is_timed_by_its_event_and_its_pods() {
    let _cpu = common::shared().await;
    let (report, script) = run(false).await;
    println!("{}", report.render_summary());
    let s = report.scaling.as_ref().expect("scaling report");
    assert_eq!(s.decisions_from.as_deref(), Some(DECISIONS_FROM_EVENTS));
    assert_eq!(
        s.inputs_missing.len(),
        1,
        "only the signals (no /explain here): {:?}",
        s.inputs_missing
    );
    assert!(s.inputs_missing[0].starts_with("signals:"));
    assert!(
        report
            .intervals
            .iter()
            .any(|i| i.over_slo.is_some_and(|n| n > 0)),
        "requests over the SLO counted"
    );
    let analysis = s.analysis.as_ref().expect("analysis");
    assert_eq!(analysis.events.len(), 1, "{:?}", analysis.events);
    let e = &analysis.events[0];
    assert_eq!((e.from_replicas, e.to_replicas), (Some(1), Some(3)));
    assert_eq!(
        e.trigger.as_deref(),
        Some("request-rate"),
        "named from the Event's reason"
    );
    // Demand: the SLO broke from the first interval.
    assert_eq!(at(e, timeline::PhaseName::Demand), Some(0.0));
    let decided = at(e, timeline::PhaseName::Decision).expect("decision");
    let want = since_load(&report, &script, DECIDED);
    assert!(
        (decided - want).abs() < 0.01,
        "decision {decided} vs the Event's {want}"
    );
    let first_seen = s
        .timeline
        .iter()
        .find(|p| p.snapshot.desired == Some(3))
        .expect("the monitor saw 3 desired")
        .t_s;
    assert!(
        decided < first_seen - 0.1,
        "the Event ({decided}) precedes the observation ({first_seen})"
    );
    let ready = at(e, timeline::PhaseName::Ready).expect("ready");
    let want = since_load(&report, &script, READY_C);
    assert!(
        (ready - want).abs() < 0.01,
        "ready {ready} vs the last pod's Ready transition {want}"
    );
    assert!(
        ready < since_load(&report, &script, DEPLOYMENT_READY) - 0.3,
        "not the Deployment's readyReplicas"
    );
    phases_sum_to_total(e);
    // Settings from the ScaledObject spec govern the phases.
    let signal = e
        .phases
        .iter()
        .find(|p| p.name == timeline::PhaseName::Signal)
        .unwrap();
    assert!(
        signal
            .governed_by
            .iter()
            .any(|g| g.name.contains("request-rate") && g.value == Some(30.0)),
        "{:?}",
        signal.governed_by
    );
    // The SLO was broken while scaling: under-provisioned intervals are counted, not 0.
    assert!(s.during_scale_up.intervals >= 2, "{:?}", s.during_scale_up);
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["schema"], "autoscaling-lab/generator-report/v2");
    let events = json["scaling"]["events"]
        .as_array()
        .expect("scaling.events[]");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["phases"].as_array().map(Vec::len), Some(6));
    assert_eq!(json["scaling"]["decisions_from"], DECISIONS_FROM_EVENTS);
    assert!(
        report.render_summary().contains("event 1"),
        "the text report has the event table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_events_leave_the_observations_and_the_report_says_so() {
    let _cpu = common::shared().await;
    let (report, script) = run(true).await;
    let s = report.scaling.as_ref().expect("scaling report");
    assert_eq!(
        s.observation_errors, 0,
        "a 403 on events is not a failed observation: {:?}",
        s.last_error
    );
    assert_eq!(
        s.decisions_from.as_deref(),
        Some(DECISIONS_FROM_OBSERVATIONS)
    );
    assert!(
        s.inputs_missing
            .iter()
            .any(|m| m.starts_with("events: ") && m.contains("403")),
        "{:?}",
        s.inputs_missing
    );
    assert!(report.render_summary().contains("input missing: events"));
    let analysis = s.analysis.as_ref().expect("analysis");
    assert_eq!(analysis.events.len(), 1, "{:?}", analysis.events);
    let e = &analysis.events[0];
    // The step is timed by the HPA's lastScaleTime, which lies between the observations around it.
    let decided = at(e, timeline::PhaseName::Decision).expect("decision");
    let want = since_load(&report, &script, DECIDED);
    assert!(
        (decided - want).abs() < 0.01,
        "decision {decided} vs lastScaleTime {want}"
    );
    phases_sum_to_total(e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_scaler_leaves_the_counts_and_notes_the_signals_missing() {
    let _cpu = common::shared().await;
    let (api, _script) = stand_in(false).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let target = KubeTarget {
        namespace: "lab".into(),
        deployment: "consumer".into(),
        hpa: Some("keda-hpa-consumer".into()),
        scaled_object: Some("consumer".into()),
    };
    let tap = generator::monitor::SignalTap::new(
        Arc::new(KubeSource::for_url(&api, target).unwrap()),
        Arc::new(generator::monitor::ExplainSource::new(
            &dead,
            "lab/consumer",
        )),
    );
    let snap = tap.observe().await.expect("the counts come from the API");
    assert_eq!(
        (snap.source.as_str(), snap.desired),
        ("kubernetes", Some(1))
    );
    let record = tap.record().expect("a record");
    assert!(
        record.missing.contains_key("signals"),
        "{:?}",
        record.missing
    );
    assert_eq!(record.settings_source.as_deref(), Some("ScaledObject spec"));
    let settings = record.settings.expect("settings");
    assert_eq!(settings.polling_interval_s, Some(1.0));
    assert_eq!(settings.scale_up_policy_periods_s, vec![5.0]);
    assert_eq!(settings.trigger_windows.get("request-rate"), Some(&30.0));
    assert_eq!(record.pods.len(), 1, "consumer-a only, before the scale-up");
}
