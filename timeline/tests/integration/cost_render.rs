//! Replica-seconds and waste with known answers, the text table, the live one-liner and the JSON shape.

use crate::common::*;
use timeline::{
    Options, SCHEMA, ScalingAnalysis, Slo, Timeline, analyse, phase_in_progress, render_event,
};

/// 150 req/s for 30 s (load end 30), then nothing. 3 replicas (5 during 10..20, an overshoot of 2) until a step down
/// to 1 at 60; observed until 70. Needed: 3 under load, minReplicas 1 after.
fn after_load() -> Timeline {
    let mut tl = base(70);
    each(&mut tl, 0, 30, |s| {
        s.offered_rate = 150.0;
        s.achieved_rate = 150.0;
        s.requests = 150;
    });
    each(&mut tl, 30, 70, |s| {
        s.offered_rate = 0.0;
        s.achieved_rate = 0.0;
        s.requests = 0;
    });
    replicas(&mut tl, 0, 3, 3);
    replicas(&mut tl, 10, 5, 5);
    replicas(&mut tl, 20, 3, 3);
    replicas(&mut tl, 60, 1, 1);
    decide(&mut tl, 10.0, 3, 5);
    decide(&mut tl, 20.0, 5, 3);
    decide(&mut tl, 60.0, 3, 1);
    tl.load_end_s = Some(30.0);
    tl
}

#[test]
fn waste_and_cost_have_known_answers() {
    let slo = Slo::parse("p95<500ms").unwrap();
    // (capacity option, capacity used, source): the observed capacity is 150 req/s over 3 ready replicas = 50; a given
    // 70 still needs ceil(150 / 70) = 3 replicas.
    for (given, used, source) in [
        (Some(50.0), 50.0, "given"),
        (None, 50.0, "observed"),
        (Some(70.0), 70.0, "given"),
    ] {
        let opts = Options {
            capacity_per_replica: given,
            ..Options::default()
        };
        let a = analyse(&after_load(), Some(&slo), &opts);
        let cap = a.capacity.as_ref().unwrap();
        assert_eq!((cap.per_replica_rate, cap.source.as_str()), (used, source));
        let c = &a.cost;
        // 3x10 + 5x10 + 3x40 + 1x10 replica-seconds; 30 x 150 requests.
        assert_eq!(c.replica_seconds, 210.0);
        assert_eq!(c.requests, 4500);
        assert!((c.replica_seconds_per_1000_requests.unwrap() - 210.0 / 4.5).abs() < 1e-9);
        // 2 extra over 10..20, 2 idle over 30..60.
        assert_eq!(c.wasted_replica_seconds, Some(80.0), "{source}");
        assert_eq!(c.wasted_after_load_end, Some(60.0));
        assert_eq!(c.wasted_before_first_step_down, Some(60.0));
        assert_eq!(c.idle_replicas_before_first_step_down, Some(2));
        let downs: Vec<(f64, u32, u32, Option<f64>)> = a
            .scale_downs
            .iter()
            .map(|d| (d.t_s, d.from, d.to, d.after_load_end_s))
            .collect();
        assert_eq!(downs, vec![(20.0, 5, 3, None), (60.0, 3, 1, Some(30.0))]);
        assert_eq!(
            a.advice.last().map(String::as_str),
            Some(
                "the 30 s scale-down stabilization window kept 2 replicas idle: 60 replica-seconds"
            )
        );
    }
    let mut floor = after_load();
    floor.settings.min_replicas = Some(0);
    let a = analyse(&floor, Some(&slo), &Options::default());
    assert_eq!(
        a.cost.wasted_after_load_end,
        Some(100.0),
        "with minReplicas 0 every idle replica is waste: 3 x 30 s + 1 x 10 s"
    );
    assert_eq!(
        a.cost.wasted_before_first_step_down,
        Some(90.0),
        "the step down at 60 ends the stabilization window's share"
    );
    let mut blind = after_load();
    each(&mut blind, 0, 70, |s| s.achieved_rate = 0.0);
    let a = analyse(&blind, Some(&slo), &Options::default());
    assert_eq!(
        (a.capacity, a.cost.wasted_replica_seconds),
        (None, None),
        "no capacity, no waste figure"
    );
}

#[test]
fn event_table_is_fixed_width() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    let a = analyse(&clean(), Some(&slo), &Options::default());
    let text = render_event(&a.events[0]);
    let want = "\
event 1 scale-up 1 -> 3 (request-rate)
  under-provisioned 9 s, 900 requests, 2 errors, 180 over the SLO latency, 5.0% of the error budget, 90.0% of the latency budget
  phase          at s   took s  governed by
  demand         10.0      0.0  capacity per replica 50 req/s
  signal         12.0      2.0  trigger window (request-rate) 2 s
  decision       14.0      2.0  pollingInterval 1 s
* ready          17.0      3.0  pod start-up and readiness
  serving        18.0      1.0  endpoint propagation and client connection reuse
  recovered      19.0      1.0  backlog drain
  total                    9.0  * dominant: ready
";
    assert_eq!(text, want, "\n{text}");
}

#[test]
fn live_view_shows_the_phase_in_progress() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    let tl = clean();
    let opts = Options::default();
    let at = |t: f64| phase_in_progress(&tl, t, Some(&slo), &opts);
    assert_eq!(at(9.0), None);
    assert_eq!(
        at(11.0).as_deref(),
        Some(
            "event 1 scale-up: waiting for the trigger to cross its target (demand at 10 s, 1 s ago; governed by pollingInterval 1 s)"
        )
    );
    assert_eq!(
        at(15.0).as_deref(),
        Some(
            "event 1 scale-up 1 -> 3 (request-rate): waiting for new replicas to pass readiness (decision at 14 s, 1 s ago; governed by pod start-up and readiness)"
        )
    );
    assert_eq!(
        at(17.7).as_deref(),
        Some(
            "event 1 scale-up 1 -> 3 (request-rate): waiting for new replicas to answer the load (ready at 17 s, 0.7 s ago; governed by endpoint propagation and client connection reuse)"
        )
    );
    assert_eq!(
        at(21.0).as_deref(),
        Some(
            "event 1 scale-up 1 -> 3 (request-rate): waiting for the SLO to hold again (serving at 18 s, 3 s ago; governed by backlog drain)"
        )
    );
    assert_eq!(
        at(25.0),
        None,
        "recovered at 19, confirmed by the 5 s hold at 24"
    );
    // Without an SLO breach there is nothing to recover from: the event is over once the new replicas answer.
    let mut proactive = clean();
    each(&mut proactive, 0, 40, |s| {
        s.latency.p95_s = Some(0.1);
        s.errors_by_class.clear();
    });
    let at = |t: f64| phase_in_progress(&proactive, t, Some(&slo), &opts);
    assert_eq!(
        at(17.7).as_deref(),
        Some(
            "event 1 scale-up 1 -> 3 (request-rate): waiting for new replicas to answer the load (ready at 17 s, 0.7 s ago; governed by endpoint propagation and client connection reuse)"
        )
    );
    assert_eq!(at(18.5), None);
}

#[test]
fn json_carries_the_schema_and_round_trips() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    let a = analyse(&clean(), Some(&slo), &Options::default());
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["schema"], SCHEMA);
    assert_eq!(json["slo"], "p95<500ms,errors<1%");
    let e = &json["events"][0];
    assert_eq!(e["kind"], "scale_up");
    assert_eq!(e["dominant"], "ready");
    let names: Vec<&str> = e["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "demand",
            "signal",
            "decision",
            "ready",
            "serving",
            "recovered"
        ]
    );
    assert_eq!(e["phases"][3]["at_s"], 17.0);
    assert_eq!(e["phases"][3]["duration_s"], 3.0);
    let back: ScalingAnalysis = serde_json::from_value(json).unwrap();
    assert_eq!(back, a);
    let tl_json = serde_json::to_string(&clean()).unwrap();
    assert_eq!(
        serde_json::from_str::<Timeline>(&tl_json).unwrap(),
        clean(),
        "the input is serde too"
    );
}

#[test]
fn input_order_does_not_matter() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    let mut shuffled = clean();
    shuffled.samples.reverse();
    shuffled.signals.reverse();
    decide(&mut shuffled, 30.0, 3, 2);
    shuffled.decisions.reverse();
    let mut ordered = clean();
    decide(&mut ordered, 30.0, 3, 2);
    let opts = Options::default();
    assert_eq!(
        analyse(&shuffled, Some(&slo), &opts),
        analyse(&ordered, Some(&slo), &opts)
    );
    assert_eq!(analyse(&ordered, Some(&slo), &opts).events.len(), 1);
}
