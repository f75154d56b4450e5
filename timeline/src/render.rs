//! Plain-text renderings: a fixed-width table per scale event for the text report, and the one-line "phase in
//! progress" a live view shows at time t.

use std::fmt::Write as _;

use crate::advice::secs;
use crate::input::Timeline;
use crate::output::{EventKind, PhaseName, ScaleEvent, Setting};
use crate::slo::Slo;
use crate::{Options, analyse};

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

fn describe(s: &Setting) -> String {
    match s.value {
        Some(v) if s.unit == "s" => format!("{} {} s", s.name, secs(v)),
        Some(v) => format!("{} {} {}", s.name, secs(v), s.unit),
        None if s.unit == "s" => format!("{} (unknown)", s.name),
        None => s.name.clone(),
    }
}

fn headline(e: &ScaleEvent) -> String {
    let kind = match e.kind {
        EventKind::ScaleUp => "scale-up",
        EventKind::ScaleDownHurt => "scale-down that hurt",
    };
    let replicas = match (e.from_replicas, e.to_replicas) {
        (Some(a), Some(b)) => format!(" {a} -> {b}"),
        _ => String::new(),
    };
    let mut why = Vec::new();
    if let Some(t) = &e.trigger {
        why.push(t.clone());
    }
    if e.decisions > 1 {
        why.push(format!("{} decisions", e.decisions));
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join(", "))
    };
    format!("event {} {kind}{replicas}{why}", e.id)
}

/// A compact fixed-width table of one event: each phase's milestone, the wait it added and what governs it.
pub fn render_event(e: &ScaleEvent) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", headline(e));
    let mut lost = format!(
        "  under-provisioned {} s, {} requests, {} errors",
        secs(e.under_provisioned_s),
        e.requests,
        e.errors
    );
    if let Some(slow) = e.slow_requests {
        let _ = write!(lost, ", {slow} over the SLO latency");
    }
    if let Some(b) = e.error_budget_burned {
        let _ = write!(lost, ", {:.1}% of the error budget", b * 100.0);
    }
    if let Some(b) = e.latency_budget_burned {
        let _ = write!(lost, ", {:.1}% of the latency budget", b * 100.0);
    }
    let _ = writeln!(s, "{lost}");
    let _ = writeln!(
        s,
        "  {:<10} {:>8} {:>8}  governed by",
        "phase", "at s", "took s"
    );
    for p in &e.phases {
        let gov = p
            .governed_by
            .first()
            .map(describe)
            .unwrap_or_else(|| "the load".into());
        let mark = if e.dominant == Some(p.name) { "*" } else { " " };
        let _ = writeln!(
            s,
            "{mark} {:<10} {:>8} {:>8}  {gov}",
            p.name.as_str(),
            cell(p.at_s),
            cell(p.duration_s)
        );
    }
    let _ = writeln!(
        s,
        "  {:<10} {:>8} {:>8}  {}",
        "total",
        "",
        cell(e.total_s),
        e.dominant.map_or("no phase dominated".into(), |d| format!(
            "* dominant: {}",
            d.as_str()
        ))
    );
    s
}

/// The phase an event is waiting in: the first phase after its latest milestone; `None` once it is over (recovered,
/// or, without demand, serving).
pub fn pending_phase(e: &ScaleEvent) -> Option<PhaseName> {
    let last = e.phases.iter().rposition(|p| p.at_s.is_some())?;
    let next = *PhaseName::ALL.get(last + 1)?;
    let demand = e.phase(PhaseName::Demand).at_s.is_some();
    (demand || next != PhaseName::Recovered).then_some(next)
}

/// One line for a live view at time `t`: the phase the latest unfinished event is in, since when, and what governs
/// it; `None` when no event is in progress. Analyses the timeline as known at `t`.
pub fn phase_in_progress(
    tl: &Timeline,
    t: f64,
    slo: Option<&Slo>,
    opts: &Options,
) -> Option<String> {
    let analysis = analyse(&tl.until(t), slo, opts);
    let e = analysis
        .events
        .iter()
        .rev()
        .find(|e| pending_phase(e).is_some())?;
    let phase = pending_phase(e)?;
    let (since_name, since) = e
        .phases
        .iter()
        .rev()
        .find_map(|p| p.at_s.map(|at| (p.name, at)))?;
    let gov = e
        .phase(phase)
        .governed_by
        .first()
        .map(|g| format!("; governed by {}", describe(g)))
        .unwrap_or_default();
    Some(format!(
        "{}: waiting for {} ({} at {} s, {} s ago{gov})",
        headline(e),
        phase.waiting_for(),
        since_name.as_str(),
        secs(since),
        secs((t - since).max(0.0))
    ))
}
