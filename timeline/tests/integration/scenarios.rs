//! Table-driven scale-event scenarios on synthetic timelines whose answers were worked out by hand (see each case's
//! comment). Every case also checks that the present phases sum to the event's total.

use crate::common::*;
use timeline::{EventKind, Options, PhaseName, ScaleEvent, Slo, Timeline, analyse};

#[derive(Debug)]
struct Want {
    kind: EventKind,
    decisions: u32,
    replicas: Option<(u32, u32)>,
    at: [Option<f64>; 6],
    took: [Option<f64>; 6],
    total: Option<f64>,
    dominant: Option<PhaseName>,
    under: f64,
}

fn up(
    at: [Option<f64>; 6],
    took: [Option<f64>; 6],
    total: f64,
    dominant: PhaseName,
    under: f64,
) -> Want {
    Want {
        kind: EventKind::ScaleUp,
        decisions: 1,
        replicas: Some((1, 3)),
        at,
        took,
        total: Some(total),
        dominant: Some(dominant),
        under,
    }
}

struct Case {
    name: &'static str,
    tl: Timeline,
    opts: Options,
    want: Vec<Want>,
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (None, None) => true,
        _ => false,
    }
}

fn check(case: &str, got: &ScaleEvent, want: &Want) {
    let at: Vec<Option<f64>> = got.phases.iter().map(|p| p.at_s).collect();
    let took: Vec<Option<f64>> = got.phases.iter().map(|p| p.duration_s).collect();
    for i in 0..6 {
        assert!(
            close(at[i], want.at[i]),
            "{case}: at {at:?} want {:?}",
            want.at
        );
        assert!(
            close(took[i], want.took[i]),
            "{case}: took {took:?} want {:?}",
            want.took
        );
    }
    assert_eq!(got.kind, want.kind, "{case}");
    assert_eq!(got.decisions, want.decisions, "{case}");
    assert_eq!(
        got.from_replicas.zip(got.to_replicas),
        want.replicas,
        "{case}"
    );
    assert!(
        close(got.total_s, want.total),
        "{case}: total {:?}",
        got.total_s
    );
    assert_eq!(got.dominant, want.dominant, "{case}");
    assert!(
        (got.under_provisioned_s - want.under).abs() < 1e-6,
        "{case}: under {}",
        got.under_provisioned_s
    );
    let sum: f64 = took.iter().flatten().sum();
    assert!(
        close(got.total_s.map(|_| sum), got.total_s),
        "{case}: phases sum {sum} != total {:?}",
        got.total_s
    );
}

fn cases() -> Vec<Case> {
    let d = Options::default;
    let s = |x: f64| Some(x);
    let mut v = Vec::new();

    // Demand 10, signal 12, decision 14, ready 17 (the later of r1/r2), serving 18, recovered 19.
    v.push(Case {
        name: "clean scale-up",
        tl: clean(),
        opts: d(),
        want: vec![up(
            [s(10.0), s(12.0), s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), s(2.0), s(2.0), s(3.0), s(1.0), s(1.0)],
            9.0,
            PhaseName::Ready,
            9.0,
        )],
    });

    // One good second (15) inside the breach is not a recovery: the SLO must hold for the 5 s hold window.
    let mut tl = clean();
    each(&mut tl, 15, 16, |s| s.latency.p95_s = Some(0.1));
    v.push(Case {
        name: "a brief good interval is not recovery",
        tl,
        opts: d(),
        want: vec![up(
            [s(10.0), s(12.0), s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), s(2.0), s(2.0), s(3.0), s(1.0), s(1.0)],
            9.0,
            PhaseName::Ready,
            9.0,
        )],
    });

    // Same without the breach: no demand, no recovery; the event runs from the signal to serving.
    let mut tl = clean();
    each(&mut tl, 0, 40, |s| {
        s.latency.p95_s = Some(0.1);
        s.errors_by_class.clear();
    });
    v.push(Case {
        name: "no SLO breach",
        tl,
        opts: d(),
        want: vec![up(
            [None, s(12.0), s(14.0), s(17.0), s(18.0), None],
            [None, s(0.0), s(2.0), s(3.0), s(1.0), None],
            6.0,
            PhaseName::Ready,
            0.0,
        )],
    });

    // Two scale-ups without a breach, the second (3 -> 4 at 15) before the first's replicas answered (18): one event.
    let mut tl = clean();
    each(&mut tl, 0, 40, |s| {
        s.latency.p95_s = Some(0.1);
        s.errors_by_class.clear();
    });
    decide(&mut tl, 15.0, 3, 4);
    v.push(Case {
        name: "proactive scale-ups merge until serving",
        tl,
        opts: d(),
        want: vec![Want {
            decisions: 2,
            replicas: Some((1, 4)),
            ..up(
                [None, s(12.0), s(14.0), s(17.0), s(18.0), None],
                [None, s(0.0), s(2.0), s(3.0), s(1.0), None],
                6.0,
                PhaseName::Ready,
                0.0,
            )
        }],
    });

    // A backlog limit of 10 per serving replica: 50 queued at the end of [9,10) is demand before p95 breaks.
    let mut tl = clean();
    each(&mut tl, 9, 19, |s| s.backlog = Some(50.0));
    v.push(Case {
        name: "backlog over its limit is demand",
        tl,
        opts: Options {
            backlog_per_replica: Some(10.0),
            ..d()
        },
        want: vec![up(
            [s(9.0), s(12.0), s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), s(3.0), s(2.0), s(3.0), s(1.0), s(1.0)],
            10.0,
            PhaseName::Signal,
            10.0,
        )],
    });

    // The trigger never crosses (value stays at target): the wait from demand to decision is all "decision".
    let mut tl = clean();
    tl.signals.iter_mut().for_each(|s| s.value = 50.0);
    v.push(Case {
        name: "no signal crossing",
        tl,
        opts: d(),
        want: vec![up(
            [s(10.0), None, s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), None, s(4.0), s(3.0), s(1.0), s(1.0)],
            9.0,
            PhaseName::Decision,
            9.0,
        )],
    });

    // r1/r2 never pass readiness and the SLO stays broken to the end (40 s): the event ends at the decision.
    let mut tl = clean();
    tl.replicas.truncate(1);
    tl.replicas.push(life("r1", Some(14.0), None, None));
    tl.replicas.push(life("r2", Some(14.0), None, None));
    slow(&mut tl, 10, 40);
    v.push(Case {
        name: "replicas never ready",
        tl,
        opts: d(),
        want: vec![up(
            [s(10.0), s(12.0), s(14.0), None, None, None],
            [s(0.0), s(2.0), s(2.0), None, None, None],
            4.0,
            PhaseName::Signal,
            30.0,
        )],
    });

    // Breach 10..15 with the trigger crossing at 11 but no decision (max replicas): recovered at 15. A lone crossing
    // at 2, long before the demand, is not this event's signal.
    let mut tl = base(30);
    slow(&mut tl, 10, 15);
    rate_signal(&mut tl, (0..30).map(f64::from), |t| {
        if (11.0..15.0).contains(&t) || t == 2.0 {
            150.0
        } else {
            50.0
        }
    });
    v.push(Case {
        name: "demand no scale-up answered",
        tl,
        opts: d(),
        want: vec![Want {
            kind: EventKind::ScaleUp,
            decisions: 0,
            replicas: None,
            at: [s(10.0), s(11.0), None, None, None, s(15.0)],
            took: [s(0.0), s(1.0), None, None, None, s(4.0)],
            total: s(5.0),
            dominant: Some(PhaseName::Recovered),
            under: 5.0,
        }],
    });

    // Policy-limited steps 1 -> 2 at 14 and 2 -> 3 at 20 inside one breach (10..24): one event (the overlap rule);
    // ready/serving are the first decision's replica (r1 17/18). A second, later breach (30..34) answered 3 -> 5 at 31
    // is its own event: r3/r4 ready 32.5, serving 33, recovered 34.
    let mut tl = base(40);
    offer(&mut tl, 10, 150.0);
    offer(&mut tl, 30, 250.0);
    slow(&mut tl, 10, 24);
    slow(&mut tl, 30, 34);
    rate_signal(&mut tl, (0..40).map(f64::from), |t| match t {
        t if t >= 30.0 => 250.0,
        t if t >= 12.0 => 150.0,
        _ => 50.0,
    });
    decide(&mut tl, 14.0, 1, 2);
    decide(&mut tl, 20.0, 2, 3);
    decide(&mut tl, 31.0, 3, 5);
    tl.replicas
        .push(life("r1", Some(14.0), Some(17.0), Some(18.0)));
    tl.replicas
        .push(life("r2", Some(20.0), Some(22.0), Some(23.0)));
    tl.replicas
        .push(life("r3", Some(31.0), Some(32.0), Some(33.0)));
    tl.replicas
        .push(life("r4", Some(31.0), Some(32.5), Some(32.8)));
    v.push(Case {
        name: "overlapping scale-ups",
        tl,
        opts: d(),
        want: vec![
            Want {
                decisions: 2,
                ..up(
                    [s(10.0), s(12.0), s(14.0), s(17.0), s(18.0), s(24.0)],
                    [s(0.0), s(2.0), s(2.0), s(3.0), s(1.0), s(6.0)],
                    14.0,
                    PhaseName::Recovered,
                    14.0,
                )
            },
            Want {
                replicas: Some((3, 5)),
                ..up(
                    [s(30.0), s(30.0), s(31.0), s(32.5), s(33.0), s(34.0)],
                    [s(0.0), s(0.0), s(1.0), s(1.5), s(0.5), s(1.0)],
                    4.0,
                    PhaseName::Ready,
                    4.0,
                )
            },
        ],
    });

    // A scale-up at 9.5 whose replicas serve only at 13 belongs to the breach that starts at 10: the signal (9) and
    // the decision were early, so they add no wait.
    let mut tl = base(30);
    offer(&mut tl, 10, 150.0);
    slow(&mut tl, 10, 14);
    rate_signal(&mut tl, (0..30).map(f64::from), |t| {
        if t >= 9.0 { 150.0 } else { 50.0 }
    });
    decide(&mut tl, 9.5, 1, 3);
    tl.replicas
        .push(life("r1", Some(9.5), Some(12.0), Some(13.0)));
    tl.replicas
        .push(life("r2", Some(9.5), Some(11.5), Some(12.5)));
    v.push(Case {
        name: "decision just before demand",
        tl,
        opts: d(),
        want: vec![up(
            [s(10.0), s(9.0), s(9.5), s(12.0), s(13.0), s(14.0)],
            [s(0.0), s(0.0), s(0.0), s(2.0), s(1.0), s(1.0)],
            4.0,
            PhaseName::Ready,
            4.0,
        )],
    });

    // A 3 -> 1 step at 20 under unchanged load: p95 breaks at 22; back to 3 at 26 (the trigger crossed at 21, once one
    // replica divides 150); r3/r4 ready 28, serving 29; recovered 30.
    for (name, hurt_window, kind) in [
        ("scale-down that hurts", 30.0, EventKind::ScaleDownHurt),
        ("breach outside the hurt window", 1.0, EventKind::ScaleUp),
    ] {
        let mut tl = base(50);
        offer(&mut tl, 0, 150.0);
        replicas(&mut tl, 0, 3, 3);
        replicas(&mut tl, 20, 1, 1);
        replicas(&mut tl, 28, 3, 3);
        slow(&mut tl, 22, 30);
        rate_signal(&mut tl, (0..50).map(f64::from), |_| 150.0);
        decide(&mut tl, 20.0, 3, 1);
        decide(&mut tl, 26.0, 1, 3);
        tl.replicas = vec![
            life("r0", Some(0.0), Some(0.0), Some(0.0)),
            life("r3", Some(26.0), Some(28.0), Some(29.0)),
            life("r4", Some(26.0), Some(27.5), Some(28.5)),
        ];
        v.push(Case {
            name,
            tl,
            opts: Options {
                hurt_window_s: hurt_window,
                ..d()
            },
            want: vec![Want {
                kind,
                ..up(
                    [s(22.0), s(21.0), s(26.0), s(28.0), s(29.0), s(30.0)],
                    [s(0.0), s(0.0), s(4.0), s(2.0), s(1.0), s(1.0)],
                    8.0,
                    PhaseName::Decision,
                    8.0,
                )
            }],
        });
    }

    // A 60 s request-rate window: the reading first crosses at 16.9; decision 17.5, ready 18.5, serving 19, recovered 20.
    v.push(Case {
        name: "long trigger window dominates",
        tl: long_window(),
        opts: d(),
        want: vec![up(
            [s(10.0), s(16.9), s(17.5), s(18.5), s(19.0), s(20.0)],
            [s(0.0), s(6.9), s(0.6), s(1.0), s(0.5), s(1.0)],
            10.0,
            PhaseName::Signal,
            10.0,
        )],
    });

    // Without lives, ready and serving come from the samples: ready 3 at the end of [16,17), 3 answering by [17,18).
    let mut tl = clean();
    tl.replicas.clear();
    replicas(&mut tl, 16, 3, 3);
    each(&mut tl, 16, 17, |s| s.served_by.truncate(2));
    v.push(Case {
        name: "phases from samples only",
        tl,
        opts: d(),
        want: vec![up(
            [s(10.0), s(12.0), s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), s(2.0), s(2.0), s(3.0), s(1.0), s(1.0)],
            9.0,
            PhaseName::Ready,
            9.0,
        )],
    });

    // A given capacity of 50 req/s per replica: the offered 150 outgrows the one replica at 8, before p95 breaks.
    let mut tl = clean();
    offer(&mut tl, 8, 150.0);
    v.push(Case {
        name: "capacity crossed before the SLO broke",
        tl,
        opts: Options {
            capacity_per_replica: Some(50.0),
            ..d()
        },
        want: vec![up(
            [s(8.0), s(12.0), s(14.0), s(17.0), s(18.0), s(19.0)],
            [s(0.0), s(4.0), s(2.0), s(3.0), s(1.0), s(1.0)],
            11.0,
            PhaseName::Signal,
            11.0,
        )],
    });
    v
}

fn long_window() -> Timeline {
    let mut tl = base(40);
    tl.settings
        .trigger_windows
        .insert("request-rate".into(), 60.0);
    offer(&mut tl, 10, 150.0);
    slow(&mut tl, 10, 20);
    rate_signal(&mut tl, (0..40).map(|k| f64::from(k) + 0.9), |t| {
        if t >= 16.9 { 150.0 } else { 50.0 }
    });
    decide(&mut tl, 17.5, 1, 3);
    tl.replicas
        .push(life("r1", Some(17.5), Some(18.5), Some(19.0)));
    tl.replicas
        .push(life("r2", Some(17.5), Some(18.2), Some(18.8)));
    replicas(&mut tl, 18, 3, 3);
    tl
}

#[test]
fn scenarios_have_their_known_answers() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    for case in cases() {
        let a = analyse(&case.tl, Some(&slo), &case.opts);
        assert_eq!(
            a.events.len(),
            case.want.len(),
            "{}: events {:#?}",
            case.name,
            a.events
        );
        for (i, (got, want)) in a.events.iter().zip(&case.want).enumerate() {
            assert_eq!(got.id, i as u32 + 1, "{}", case.name);
            check(case.name, got, want);
        }
    }
}

#[test]
fn clean_event_counts_the_slo_lost_and_names_the_governing_settings() {
    let slo = Slo::parse("p95<500ms,errors<1%").unwrap();
    let a = analyse(&clean(), Some(&slo), &Options::default());
    let e = &a.events[0];
    // Window 10..19: 9 samples of 100 requests, 20 over the limit each, 2 timeouts; the run has 4000 requests.
    assert_eq!((e.requests, e.slow_requests, e.errors), (900, Some(180), 2));
    assert!((e.error_budget_burned.unwrap() - 2.0 / 40.0).abs() < 1e-9);
    assert!((e.latency_budget_burned.unwrap() - 180.0 / 200.0).abs() < 1e-9);
    let sig = e.signal.as_ref().unwrap();
    assert_eq!(
        (sig.trigger.as_str(), sig.value, sig.target, sig.age_s),
        ("request-rate", 150.0, 50.0, Some(0.5))
    );
    assert_eq!(e.trigger.as_deref(), Some("request-rate"));
    let main = |p: PhaseName| e.phase(p).governed_by[0].name.clone();
    assert_eq!(main(PhaseName::Signal), "trigger window (request-rate)");
    assert_eq!(e.phase(PhaseName::Signal).governed_by[0].value, Some(2.0));
    assert_eq!(main(PhaseName::Decision), "pollingInterval");
    assert_eq!(main(PhaseName::Ready), "pod start-up and readiness");
    assert_eq!(main(PhaseName::Recovered), "backlog drain");
}

#[test]
fn overlap_names_the_policy_period_and_scale_down_hurt_names_the_step() {
    let slo = Slo::parse("p95<500ms").unwrap();
    let all = cases();
    let overlap = all
        .iter()
        .find(|c| c.name == "overlapping scale-ups")
        .unwrap();
    let a = analyse(&overlap.tl, Some(&slo), &overlap.opts);
    let rec = &a.events[0].phase(PhaseName::Recovered).governed_by[0];
    assert_eq!(
        (rec.name.as_str(), rec.value),
        ("scale-up policy period", Some(6.0))
    );
    assert!(
        a.advice
            .iter()
            .any(|s| s.contains("in 2 steps paced by the scale-up policy period (6 s)")),
        "{:?}",
        a.advice
    );
    let hurt = all
        .iter()
        .find(|c| c.name == "scale-down that hurts")
        .unwrap();
    let a = analyse(&hurt.tl, Some(&slo), &hurt.opts);
    let step = a.events[0].after_scale_down.as_ref().unwrap();
    assert_eq!((step.t_s, step.from, step.to), (20.0, 3, 1));
    assert!(a.advice.contains(&"event 1: the step down from 3 to 1 replicas at 20 s was followed by an SLO breach 2 s \
         later: a longer scale-down stabilization window (now 30 s) or a slower scale-down policy avoids it"
        .to_string()), "{:?}", a.advice);
}

#[test]
fn advice_reads_the_numbers() {
    let slo = Slo::parse("p95<500ms").unwrap();
    let a = analyse(&long_window(), Some(&slo), &Options::default());
    assert_eq!(
        a.advice,
        vec![
            "event 1: 6.9 s of the 10 s went to the request-rate trigger's 60 s window: a shorter window, or the \
             backlog trigger, reacts sooner"
        ]
    );
    let mut tl = clean();
    tl.replicas.truncate(1);
    tl.replicas.push(life("r1", Some(14.0), None, None));
    slow(&mut tl, 10, 40);
    let a = analyse(&tl, Some(&slo), &Options::default());
    assert_eq!(
        a.advice[..2],
        [
            "event 1: the replicas asked for at 14 s (1 -> 3) never all passed readiness"
                .to_string(),
            "event 1: the SLO had not held again for the hold window when observation ended"
                .to_string(),
        ]
    );
    let unanswered = cases()
        .into_iter()
        .find(|c| c.name == "demand no scale-up answered")
        .unwrap();
    let a = analyse(&unanswered.tl, Some(&slo), &unanswered.opts);
    assert_eq!(
        a.advice[0],
        "event 1: the request-rate trigger crossed its target at 11 s but no scale-up followed: is maxReplicaCount \
         reached?"
    );
    let none = analyse(&base(20), Some(&slo), &Options::default());
    assert!(none.events.is_empty() && none.advice.is_empty(), "{none:?}");
}

/// A scale-up decided within the policy period after the previous one was held back by the policy, not by polling;
/// a trigger with no window (a gauge) is read each poll, not given an unknown window.
#[test]
fn a_step_soon_after_another_is_governed_by_the_policy_period() {
    let slo = Slo::parse("p95<500ms").unwrap();
    let opts = Options {
        recovery_hold_s: 0.5,
        ..Options::default()
    };
    let mut tl = clean();
    offer(&mut tl, 20, 250.0);
    slow(&mut tl, 20, 26);
    rate_signal(&mut tl, (20..40).map(f64::from), |_| 250.0);
    // 6 s after the 1 -> 3 step at 14 (the policy period is 6 s).
    decide(&mut tl, 20.0, 3, 5);
    let a = analyse(&tl, Some(&slo), &opts);
    assert_eq!(a.events.len(), 2, "{:#?}", a.events);
    let first = a.events[0].phase(PhaseName::Decision);
    assert_eq!(
        first.governed_by[0].name, "pollingInterval",
        "nothing before the first step"
    );
    let second = a.events[1].phase(PhaseName::Decision);
    assert_eq!(second.governed_by[0].name, "scale-up policy period");
    assert_eq!(second.governed_by[0].value, Some(6.0));

    // The same step 7 s after the previous one is outside the period: polling governs again.
    let mut later = tl.clone();
    later.decisions.last_mut().unwrap().t_s = 21.0;
    let a = analyse(&later, Some(&slo), &opts);
    let second = a.events[1].phase(PhaseName::Decision);
    assert_eq!(second.governed_by[0].name, "pollingInterval");

    // A trigger without a window.
    let mut gauge = clean();
    gauge.settings.trigger_windows.remove("request-rate");
    let a = analyse(&gauge, Some(&slo), &Options::default());
    let signal = a.events[0].phase(PhaseName::Signal);
    assert_eq!(
        signal.governed_by[0].name,
        "trigger value (request-rate), read each poll"
    );
    assert_eq!(signal.governed_by[0].value, None);
}
