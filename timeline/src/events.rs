//! Scale events and their six phases. Scale-up decisions are grouped into events by the overlap rule (see
//! docs/scaling-report.md): all scale-ups inside one under-provisioned episode are one event; a scale-up shortly
//! before an episode, whose replicas were not yet serving when the episode began, belongs to it; other scale-ups are
//! proactive events without demand, merged while the earlier one's replicas are not yet serving. An episode with no
//! scale-up is an event too (its decision and later phases are missing).

use crate::episodes::{Ctx, EPS, Episode};
use crate::input::{DecisionPoint, Timeline};
use crate::output::{
    EventKind, Phase, PhaseName, ScaleDownStep, ScaleEvent, Setting, SignalDetail,
};

/// Decisions (indices into the timeline's decisions) and the episode they answer.
#[derive(Debug)]
struct Group {
    episode: Option<Episode>,
    decisions: Vec<usize>,
}

impl Group {
    fn start(&self, tl: &Timeline) -> f64 {
        let first = self.decisions.first().map(|i| tl.decisions[*i].t_s);
        match (self.episode, first) {
            (Some(e), Some(t)) => e.demand_s.min(t),
            (Some(e), None) => e.demand_s,
            (None, Some(t)) => t,
            (None, None) => 0.0,
        }
    }
}

/// When the replicas a decision asked for passed readiness and first answered the load.
fn ready_and_serving(ctx: &Ctx, d: &DecisionPoint) -> (Option<f64>, Option<f64>) {
    let tl = ctx.tl;
    let wanted = d.to.saturating_sub(d.from) as usize;
    if tl.replicas.is_empty() {
        let after = || tl.samples.iter().filter(|s| s.end_s >= d.t_s - EPS);
        let ready = after()
            .find(|s| s.ready.is_some_and(|r| r >= d.to))
            .map(|s| s.end_s);
        let serving = after()
            .find(|s| s.served_by.len() >= d.to as usize)
            .map(|s| s.end_s);
        return (ready, serving);
    }
    let mut fresh: Vec<_> = tl
        .replicas
        .iter()
        .filter_map(|r| r.ready_s.filter(|t| *t >= d.t_s - EPS).map(|t| (t, r)))
        .collect();
    fresh.sort_by(|a, b| a.0.total_cmp(&b.0));
    if wanted == 0 || fresh.len() < wanted {
        return (None, None);
    }
    let ready = fresh[wanted - 1].0;
    let mut serving = ready;
    for (ready_s, life) in &fresh[..wanted] {
        let first = life.first_served_s.or_else(|| {
            tl.samples
                .iter()
                .find(|s| s.served_by.contains(&life.name))
                .map(|s| s.end_s.max(*ready_s))
        });
        match first {
            Some(t) => serving = serving.max(t),
            None => return (Some(ready), None),
        }
    }
    (Some(ready), Some(serving))
}

/// The trigger reading that first crossed its target in the run of crossings still going on at `until` (the
/// decision), for `trigger` or, when unknown, any trigger (the earliest such run).
fn signal_before(ctx: &Ctx, trigger: Option<&str>, until: f64) -> Option<SignalDetail> {
    let mut names: Vec<&str> = ctx.tl.signals.iter().map(|s| s.trigger.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut best: Option<(f64, SignalDetail)> = None;
    for name in names
        .into_iter()
        .filter(|n| trigger.is_none_or(|t| t == *n))
    {
        let mut run = None;
        for s in ctx
            .tl
            .signals
            .iter()
            .filter(|s| s.trigger == name && s.t_s <= until + EPS)
        {
            if ctx.crosses(s) {
                run.get_or_insert((s.t_s, s));
            } else {
                run = None;
            }
        }
        if let Some((t, s)) = run
            && best.as_ref().is_none_or(|(b, _)| t < *b)
        {
            best = Some((t, detail(s)));
        }
    }
    best.map(|(_, d)| d)
}

/// The first crossing of any trigger within `[from, to]` (for demand that no decision answered).
fn signal_within(ctx: &Ctx, from: f64, to: f64) -> Option<SignalDetail> {
    ctx.tl
        .signals
        .iter()
        .filter(|s| s.t_s >= from - EPS && s.t_s <= to + EPS && ctx.crosses(s))
        .min_by(|a, b| a.t_s.total_cmp(&b.t_s))
        .map(detail)
}

fn detail(s: &crate::input::SignalSample) -> SignalDetail {
    SignalDetail {
        t_s: s.t_s,
        trigger: s.trigger.clone(),
        value: s.value,
        target: s.target,
        age_s: s.age_s,
    }
}

fn setting(name: impl Into<String>, value: Option<f64>, unit: &str) -> Setting {
    Setting {
        name: name.into(),
        value,
        unit: unit.into(),
    }
}

fn governing(
    ctx: &Ctx,
    phase: PhaseName,
    trigger: Option<&str>,
    decisions: usize,
    policy_held: bool,
) -> Vec<Setting> {
    let st = &ctx.tl.settings;
    match phase {
        PhaseName::Demand => ctx
            .capacity
            .iter()
            .map(|c| setting("capacity per replica", Some(c.per_replica_rate), "req/s"))
            .collect(),
        PhaseName::Signal => {
            let mut v = Vec::new();
            if let Some(t) = trigger {
                // A gauge (backlog) has no window: its value is read fresh each poll.
                v.push(match st.trigger_windows.get(t) {
                    Some(window) => setting(format!("trigger window ({t})"), Some(*window), "s"),
                    None => setting(format!("trigger value ({t}), read each poll"), None, ""),
                });
            }
            v.push(setting("pollingInterval", st.polling_interval_s, "s"));
            v
        }
        PhaseName::Decision => {
            let mut v = vec![
                setting("pollingInterval", st.polling_interval_s, "s"),
                setting(
                    "scale-up stabilization window",
                    st.scale_up_stabilization_s,
                    "s",
                ),
            ];
            // The longer of the two is the main one.
            v.sort_by(|a, b| b.value.unwrap_or(-1.0).total_cmp(&a.value.unwrap_or(-1.0)));
            if policy_held {
                // A scale-up shortly before this one: the policy's rate limit, not the polling, held the step back.
                v.insert(
                    0,
                    setting("scale-up policy period", longest_policy_period(st), "s"),
                );
            }
            v
        }
        PhaseName::Ready => vec![setting("pod start-up and readiness", None, "")],
        PhaseName::Serving => vec![setting(
            "endpoint propagation and client connection reuse",
            None,
            "",
        )],
        PhaseName::Recovered => {
            let period = st
                .scale_up_policy_periods_s
                .iter()
                .copied()
                .min_by(f64::total_cmp);
            let mut v = vec![
                setting("backlog drain", None, ""),
                setting("recovery hold window", Some(ctx.opts.recovery_hold_s), "s"),
            ];
            if decisions > 1 {
                v.insert(0, setting("scale-up policy period", period, "s"));
            }
            v
        }
    }
}

fn longest_policy_period(st: &crate::input::Settings) -> Option<f64> {
    st.scale_up_policy_periods_s
        .iter()
        .copied()
        .max_by(f64::total_cmp)
}

/// Was the scale-up decision at `t_s` held back by the scale-up policies? True when another scale-up was decided
/// within the longest policy period before it: the HPA then allows only the policy's step per period.
fn policy_held(tl: &Timeline, t_s: f64) -> bool {
    let Some(period) = longest_policy_period(&tl.settings) else {
        return false;
    };
    tl.decisions
        .iter()
        .any(|d| d.to > d.from && d.t_s < t_s - EPS && t_s - d.t_s <= period + EPS)
}

/// Group the scale-up decisions into events (the overlap rule in the module docs).
fn groups(ctx: &Ctx, episodes: &[Episode]) -> Vec<Group> {
    let tl = ctx.tl;
    let mut by_episode: Vec<Group> = episodes
        .iter()
        .map(|e| Group {
            episode: Some(*e),
            decisions: Vec::new(),
        })
        .collect();
    let mut proactive: Vec<Group> = Vec::new();
    let mut ups: Vec<usize> = (0..tl.decisions.len())
        .filter(|i| tl.decisions[*i].to > tl.decisions[*i].from)
        .collect();
    ups.sort_by(|a, b| tl.decisions[*a].t_s.total_cmp(&tl.decisions[*b].t_s));
    for i in ups {
        let d = &tl.decisions[i];
        if let Some(g) = by_episode
            .iter_mut()
            .find(|g| g.episode.is_some_and(|e| e.contains(d.t_s)))
        {
            g.decisions.push(i);
            continue;
        }
        let serving = ready_and_serving(ctx, d).1;
        if let Some(g) = by_episode
            .iter_mut()
            .find(|g| g.episode.is_some_and(|e| e.demand_s > d.t_s))
            .filter(|g| serving.is_none_or(|s| s > g.episode.map_or(0.0, |e| e.demand_s)))
        {
            g.decisions.push(i);
            continue;
        }
        if let Some(g) = proactive.last_mut() {
            let first = &tl.decisions[g.decisions[0]];
            if ready_and_serving(ctx, first).1.is_none_or(|s| d.t_s < s) {
                g.decisions.push(i);
                continue;
            }
        }
        proactive.push(Group {
            episode: None,
            decisions: vec![i],
        });
    }
    let mut all: Vec<Group> = by_episode.into_iter().chain(proactive).collect();
    for g in &mut all {
        g.decisions
            .sort_by(|a, b| tl.decisions[*a].t_s.total_cmp(&tl.decisions[*b].t_s));
    }
    all.sort_by(|a, b| a.start(tl).total_cmp(&b.start(tl)));
    all
}

/// Every step down of desired replicas, with its delay after the load end.
pub(crate) fn scale_downs(tl: &Timeline) -> Vec<ScaleDownStep> {
    let mut v: Vec<ScaleDownStep> = tl
        .decisions
        .iter()
        .filter(|d| d.to < d.from)
        .map(|d| ScaleDownStep {
            t_s: d.t_s,
            from: d.from,
            to: d.to,
            after_load_end_s: tl
                .load_end_s
                .filter(|end| d.t_s >= *end - EPS)
                .map(|end| d.t_s - end),
        })
        .collect();
    v.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    v
}

/// The scale events of the run, in time order.
pub(crate) fn events(ctx: &Ctx) -> Vec<ScaleEvent> {
    let tl = ctx.tl;
    let episodes = ctx.episodes();
    let downs = scale_downs(tl);
    let run_requests: u64 = tl.samples.iter().map(|s| s.requests).sum();
    let mut out = Vec::new();
    for (n, g) in groups(ctx, &episodes).into_iter().enumerate() {
        let first = g.decisions.first().map(|i| &tl.decisions[*i]);
        let held = first.is_some_and(|d| policy_held(tl, d.t_s));
        let demand = g.episode.map(|e| e.demand_s);
        let recovered = g.episode.and_then(|e| e.recovered_s);
        let signal = match (first, g.episode) {
            (Some(d), _) => signal_before(ctx, d.trigger.as_deref(), d.t_s),
            (None, Some(e)) => signal_within(
                ctx,
                e.demand_s,
                e.recovered_s.unwrap_or(tl.observed_until()),
            ),
            (None, None) => None,
        };
        let signal_at = signal.as_ref().map(|s| s.t_s);
        let (ready, serving) = first.map_or((None, None), |d| ready_and_serving(ctx, d));
        let at = [
            demand,
            signal_at,
            first.map(|d| d.t_s),
            ready,
            serving,
            recovered,
        ];
        let trigger = first
            .and_then(|d| d.trigger.clone())
            .or_else(|| signal.as_ref().map(|s| s.trigger.clone()));
        let mut reached: Option<f64> = None;
        let mut start = None;
        let phases: Vec<Phase> = PhaseName::ALL
            .iter()
            .zip(at)
            .map(|(name, at_s)| {
                let duration_s = at_s.map(|t| {
                    let before = reached.unwrap_or(t);
                    let now = before.max(t);
                    reached = Some(now);
                    start.get_or_insert(now);
                    now - before
                });
                Phase {
                    name: *name,
                    at_s,
                    duration_s,
                    governed_by: governing(ctx, *name, trigger.as_deref(), g.decisions.len(), held),
                }
            })
            .collect();
        let dominant = phases
            .iter()
            .filter(|p| p.duration_s.is_some_and(|d| d > EPS))
            .fold(None::<&Phase>, |best, p| match best {
                Some(b) if b.duration_s >= p.duration_s => Some(b),
                _ => Some(p),
            })
            .map(|p| p.name);
        let window_end = recovered.unwrap_or(tl.observed_until());
        let in_window: Vec<_> = match demand {
            Some(d) => tl
                .samples
                .iter()
                .filter(|s| s.start_s >= d - EPS && s.end_s <= window_end + EPS)
                .collect(),
            None => Vec::new(),
        };
        let requests = in_window.iter().map(|s| s.requests).sum();
        let errors: u64 = in_window.iter().map(|s| s.errors()).sum();
        let counted: Vec<u64> = in_window.iter().filter_map(|s| s.over_slo).collect();
        let slow_requests = (!counted.is_empty()).then(|| counted.iter().sum());
        let budget = |bad: u64, share: f64| {
            (run_requests > 0 && share > 0.0).then(|| bad as f64 / (share * run_requests as f64))
        };
        let slo = ctx.slo;
        let error_budget_burned = slo
            .and_then(|s| s.max_error_share)
            .and_then(|share| budget(errors, share));
        let latency_budget_burned = slo
            .and_then(|s| s.counted_latency())
            .zip(slow_requests)
            .and_then(|(o, slow)| budget(slow, o.percentile.allowance()));
        let after_scale_down = demand.and_then(|t| {
            downs
                .iter()
                .rev()
                .find(|s| s.t_s <= t + EPS)
                .filter(|s| t - s.t_s <= ctx.opts.hurt_window_s + EPS)
                .filter(|s| {
                    !tl.decisions
                        .iter()
                        .any(|d| d.to > d.from && d.t_s > s.t_s && d.t_s < t - EPS)
                })
                .cloned()
        });
        out.push(ScaleEvent {
            id: n as u32 + 1,
            kind: if after_scale_down.is_some() {
                EventKind::ScaleDownHurt
            } else {
                EventKind::ScaleUp
            },
            from_replicas: first.map(|d| d.from),
            to_replicas: g.decisions.iter().map(|i| tl.decisions[*i].to).max(),
            decisions: g.decisions.len() as u32,
            trigger,
            signal,
            start_s: start,
            end_s: reached,
            total_s: start.zip(reached).map(|(a, b)| b - a),
            phases,
            dominant,
            under_provisioned_s: demand.map_or(0.0, |d| window_end - d),
            requests,
            slow_requests,
            errors,
            error_budget_burned,
            latency_budget_burned,
            after_scale_down,
        });
    }
    out
}
