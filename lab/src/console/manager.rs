//! The run manager: at most one active run (the machine has two cores), its live data and event feed, its stop and
//! rate controls, and its record in the runs directory from the first status to the last. Console-started runs and
//! the demo run (`lab` with the console on) both pass through [`Manager::begin`] and [`Manager::finish`].

use std::path::Path;
use std::sync::{Arc, Mutex};

use load::engine::RateControl;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::api::{Note, RunData, RunMeta, Sample, ScaleEvent, Status, Summary, TriggerInfo};
use super::history::History;
use super::shapes::{phases, rebased, round3, sample, scale_events};
use crate::chaos::ChaosPort;
use crate::run::{LiveInterval, RunHooks, RunObserver};
use crate::view::DecisionRecord;
use crate::{LabError, LabOutcome};

/// How many events a slow SSE client may fall behind before it misses some.
const FEED_CAPACITY: usize = 1024;

/// One event of a run's live feed.
#[derive(Debug, Clone)]
pub enum Event {
    Sample(Box<Sample>),
    Decision(Box<DecisionRecord>),
    Note(Note),
    Status(Box<RunMeta>),
}

/// The run in progress.
struct Active {
    data: RunData,
    rate: Arc<RateControl>,
    /// Faults from the chaos buttons, while the load runs.
    chaos: Arc<ChaosPort>,
    cancel: CancellationToken,
    feed: broadcast::Sender<Event>,
    /// Whether a write to the runs directory failed already (reported once per run).
    disk_failed: bool,
}

impl Active {
    /// A write to the run's directory: the first failure is logged and becomes a note of the run (the console still
    /// serves the run from memory; what is lost is the copy on disk, read after a restart).
    fn kept(&mut self, what: &str, written: std::io::Result<()>) {
        let Err(error) = written else { return };
        if std::mem::replace(&mut self.disk_failed, true) {
            return;
        }
        let id = &self.data.meta.id;
        tracing::warn!(run = %id, %error, "cannot write {what} to the runs directory");
        let note = Note {
            t_s: self.data.samples.last().map_or(0.0, |s| s.t_s),
            text: format!(
                "cannot write {what} to the runs directory ({error}): this run's record on disk misses what follows"
            ),
        };
        self.data.notes.push(note.clone());
        let _ = self.feed.send(Event::Note(note));
    }
}

/// What a subscriber gets: everything so far and, while the run goes on, the feed from that instant.
pub enum Subscription {
    Live(Box<RunData>, broadcast::Receiver<Event>),
    Ended(Box<RunData>),
}

/// Why a run could not be started, stopped or changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another run is active (its id).
    Busy(String),
    NotFound,
    /// The run exists but is not running.
    NotRunning,
}

/// The runs: the active one in memory, all of them on disk.
pub struct Manager {
    history: History,
    active: Mutex<Option<Active>>,
    /// Every child of every console-started run, killed at once on a second interrupt.
    pub registry: procs::Registry,
}

impl Manager {
    pub fn new(history: History) -> Arc<Manager> {
        Arc::new(Manager {
            history,
            active: Mutex::new(None),
            registry: procs::Registry::new(),
        })
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The id of the active run.
    pub fn active_id(&self) -> Option<String> {
        self.lock().as_ref().map(|a| a.data.meta.id.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve the one run slot: `prepare` gets a fresh run id and directory and returns the run's meta and
    /// triggers (or refuses, and the directory is removed). Returns the hooks the run must be given.
    pub fn begin<E, T>(
        self: &Arc<Self>,
        stamp: &str,
        profile: &str,
        rate_multiplier: f64,
        cancel: CancellationToken,
        prepare: impl FnOnce(&str, &Path) -> Result<(RunMeta, Vec<TriggerInfo>, T), E>,
    ) -> Result<Result<(RunMeta, RunHooks, T), E>, Refusal>
    where
        E: From<std::io::Error>,
    {
        let mut active = self.lock();
        if let Some(a) = active.as_ref() {
            return Err(Refusal::Busy(a.data.meta.id.clone()));
        }
        let id = match self.history.create(stamp, profile) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e.into())),
        };
        let dir = self.history.dir(&id);
        let (meta, triggers, extra) = match prepare(&id, &dir) {
            Ok(prepared) => prepared,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(Err(e));
            }
        };
        if let Err(e) = self.history.write_meta(&meta) {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(Err(e.into()));
        }
        let rate = Arc::new(RateControl::new(rate_multiplier));
        let chaos = Arc::new(ChaosPort::default());
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        *active = Some(Active {
            data: RunData {
                meta: meta.clone(),
                samples: Vec::new(),
                decisions: Vec::new(),
                notes: Vec::new(),
                triggers,
                phases: Vec::new(),
                scale_events: Vec::new(),
                report: None,
            },
            rate: rate.clone(),
            chaos: chaos.clone(),
            cancel,
            feed,
            disk_failed: false,
        });
        let hooks = RunHooks {
            observer: Some(Arc::new(Feed {
                manager: self.clone(),
                id: id.clone(),
            })),
            rate: Some(rate),
            chaos: Some(chaos),
            banner: Vec::new(),
        };
        Ok(Ok((meta, hooks, extra)))
    }

    /// Stop the active run `id` (its interrupt: the partial report is written).
    pub fn stop(&self, id: &str) -> Result<RunMeta, Refusal> {
        let active = self.lock();
        match active.as_ref() {
            Some(a) if a.data.meta.id == id => {
                a.cancel.cancel();
                Ok(a.data.meta.clone())
            }
            _ => Err(self.not_active(id)),
        }
    }

    /// Stop whatever runs (the console is shutting down).
    pub fn stop_all(&self) {
        if let Some(a) = self.lock().as_ref() {
            a.cancel.cancel();
        }
    }

    /// Change the active run's rate multiplier.
    pub fn set_rate(&self, id: &str, multiplier: f64) -> Result<RunMeta, Refusal> {
        let mut active = self.lock();
        match active.as_mut() {
            Some(a) if a.data.meta.id == id && !a.cancel.is_cancelled() => {
                a.rate.set(multiplier);
                a.data.meta.rate_multiplier = multiplier;
                a.kept("meta.json", self.history.write_meta(&a.data.meta));
                let _ = a.feed.send(Event::Status(Box::new(a.data.meta.clone())));
                Ok(a.data.meta.clone())
            }
            _ => Err(self.not_active(id)),
        }
    }

    /// The active run's way in for faults.
    pub fn chaos(&self, id: &str) -> Result<Arc<ChaosPort>, Refusal> {
        match self.lock().as_ref() {
            Some(a) if a.data.meta.id == id && !a.cancel.is_cancelled() => Ok(a.chaos.clone()),
            _ => Err(self.not_active(id)),
        }
    }

    fn not_active(&self, id: &str) -> Refusal {
        if self.history.read(id).is_some() {
            Refusal::NotRunning
        } else {
            Refusal::NotFound
        }
    }

    /// Every run, newest first: the active one as it is now, the rest from disk.
    pub fn list(&self) -> Vec<RunMeta> {
        let active = self.lock().as_ref().map(|a| a.data.meta.clone());
        let mut metas = self.history.list();
        if let Some(meta) = active {
            match metas.iter_mut().find(|m| m.id == meta.id) {
                Some(m) => *m = meta,
                None => metas.insert(0, meta),
            }
        }
        metas
    }

    pub fn get(&self, id: &str) -> Option<RunData> {
        if let Some(a) = self.lock().as_ref().filter(|a| a.data.meta.id == id) {
            return Some(a.data.clone());
        }
        self.history.read(id)
    }

    pub fn subscribe(&self, id: &str) -> Option<Subscription> {
        if let Some(a) = self.lock().as_ref().filter(|a| a.data.meta.id == id) {
            // Under the lock: nothing is published between the snapshot and the subscription.
            return Some(Subscription::Live(
                Box::new(a.data.clone()),
                a.feed.subscribe(),
            ));
        }
        self.history
            .read(id)
            .map(|d| Subscription::Ended(Box::new(d)))
    }

    /// Remove a run that is not active.
    pub fn delete(&self, id: &str) -> Result<(), Refusal> {
        let active = self.lock();
        if active.as_ref().is_some_and(|a| a.data.meta.id == id) {
            return Err(Refusal::Busy(id.to_string()));
        }
        match self.history.delete(id) {
            Ok(true) => Ok(()),
            _ => Err(Refusal::NotFound),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Active, &History)) {
        let mut active = self.lock();
        if let Some(a) = active.as_mut().filter(|a| a.data.meta.id == id) {
            f(a, &self.history);
        }
    }

    /// Mark the run started (its children are being spawned).
    pub fn set_status(&self, id: &str, status: Status) {
        self.update(id, |a, history| set_status(a, history, status));
    }

    /// Record the run's end: the lab's files copied from `out_dir` when it wrote them elsewhere, the report, the
    /// decisions re-based to the load start, the phases and scale events, the summary and the final status.
    pub fn finish(
        &self,
        id: &str,
        result: &Result<LabOutcome, LabError>,
        cancelled: bool,
        out_dir: &Path,
    ) {
        let dir = self.history.dir(id);
        if out_dir != dir {
            for name in [
                "report.json",
                "report.svg",
                "triggers.svg",
                "decisions.jsonl",
                "summary.txt",
            ] {
                match std::fs::copy(out_dir.join(name), dir.join(name)) {
                    // A run that failed early wrote only some of them.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(run = %id, %error, "cannot copy {name} into the runs directory")
                    }
                    Ok(_) => {}
                }
            }
        }
        let mut active = self.lock();
        let Some(mut a) = active.take().filter(|a| a.data.meta.id == id) else {
            return;
        };
        let data = &mut a.data;
        data.meta.ended_at = Some(now_rfc3339());
        match result {
            Ok(outcome) => {
                data.decisions = outcome
                    .decisions
                    .iter()
                    .map(|d| rebased(d, outcome.load_start_s))
                    .collect();
                data.scale_events = scale_events(&data.decisions);
                let report = serde_json::to_value(&outcome.report).ok();
                data.phases = report.as_ref().map(phases).unwrap_or_default();
                data.report = report;
                data.meta.exit_code = Some(outcome.exit_code);
                data.meta.summary = Some(Summary {
                    requests: outcome.report.requests,
                    errors: outcome.report.errors.total,
                    p95_ms: outcome.report.latency.p95_ms,
                    max_replicas_seen: data
                        .decisions
                        .iter()
                        .map(|d| d.current)
                        .chain(data.samples.iter().filter_map(|s| s.replicas.current))
                        .max()
                        .unwrap_or(0),
                    time_to_scale_s: outcome
                        .report
                        .scaling
                        .as_ref()
                        .and_then(|s| s.time_to_scale_s),
                });
                data.meta.status = if cancelled {
                    Status::Stopped
                } else {
                    Status::Finished
                };
            }
            Err(error) => {
                data.meta.exit_code = Some(error.exit_code());
                data.meta.error = Some(error.to_string());
                data.meta.status = if cancelled && matches!(error, LabError::Interrupted) {
                    Status::Stopped
                } else {
                    Status::Failed
                };
            }
        }
        let written = self
            .history
            .write_run(data)
            .and_then(|()| self.history.write_meta(&data.meta));
        if let Err(error) = written {
            // Nothing reads the run after this but the history: say what it will show instead.
            tracing::error!(run = %id, %error, "cannot write the run's end to the runs directory: after a restart it shows as failed, without its report");
        }
        // Still under the lock: a subscriber either saw this run active and gets this event, or reads it from disk.
        let _ = a.feed.send(Event::Status(Box::new(a.data.meta.clone())));
    }
}

fn set_status(a: &mut Active, history: &History, status: Status) {
    if a.data.meta.status != status {
        a.data.meta.status = status;
        let written = history.write_meta(&a.data.meta);
        a.kept("meta.json", written);
        let _ = a.feed.send(Event::Status(Box::new(a.data.meta.clone())));
    }
}

/// The run's observer: turns each interval into a sample, decisions and notes, kept and published.
struct Feed {
    manager: Arc<Manager>,
    id: String,
}

impl RunObserver for Feed {
    fn interval(&self, live: &LiveInterval<'_>) {
        self.manager.update(&self.id, |a, history| {
            let status = if live.stats.start_s >= live.profile_end_s {
                Status::Settling
            } else {
                Status::Running
            };
            if !a.cancel.is_cancelled() {
                set_status(a, history, status);
            }
            for text in live.new_notes {
                let note = Note {
                    t_s: round3(live.stats.start_s),
                    text: text.clone(),
                };
                let written = history.append_note(&self.id, &note);
                a.kept("notes.jsonl", written);
                a.data.notes.push(note.clone());
                let _ = a.feed.send(Event::Note(note));
            }
            for d in live.new_decisions {
                let d = rebased(d, live.load_start_s);
                if d.desired != d.current {
                    a.data.scale_events.push(ScaleEvent {
                        t_s: d.t_s,
                        from: d.current,
                        to: d.desired,
                    });
                }
                a.data.decisions.push(d.clone());
                let _ = a.feed.send(Event::Decision(Box::new(d)));
            }
            let sample = sample(live, a.rate.get());
            let written = history.append_sample(&self.id, &sample);
            a.kept("samples.jsonl", written);
            a.data.samples.push(sample.clone());
            let _ = a.feed.send(Event::Sample(Box::new(sample)));
        });
    }
}

/// Now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Now as `YYYYMMDD-HHMMSS` (UTC): the start of a run id.
pub fn id_stamp() -> String {
    let text = now_rfc3339();
    // 2026-11-30T02:15:00Z -> 20261130-021500
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_stamps_sort_by_time() {
        let stamp = id_stamp();
        assert_eq!(stamp.len(), 15, "{stamp}");
        assert_eq!(&stamp[8..9], "-");
    }

    fn meta(id: &str) -> RunMeta {
        RunMeta {
            id: id.into(),
            label: "test".into(),
            profile: "steady".into(),
            status: Status::Starting,
            started_at: now_rfc3339(),
            ended_at: None,
            time_scale: 1.0,
            rate_multiplier: 1.0,
            scaledobject: "consumer".into(),
            max_replicas: None,
            exit_code: None,
            error: None,
            summary: None,
        }
    }

    #[test]
    fn an_unwritable_runs_dir_is_reported_once_per_run() {
        let runs = tempfile::tempdir().expect("tempdir");
        let manager = Manager::new(History::new(runs.path().to_path_buf()));
        let (meta, _hooks, ()) = manager
            .begin(
                "20260101-000000",
                "steady",
                1.0,
                CancellationToken::new(),
                |id, _| Ok::<_, std::io::Error>((meta(id), Vec::new(), ())),
            )
            .expect("free slot")
            .expect("prepared");
        // The run's directory turns into a file: every later write fails, even as root.
        let dir = manager.history().dir(&meta.id);
        std::fs::remove_dir_all(&dir).expect("remove");
        std::fs::write(&dir, "in the way").expect("file");
        manager.set_rate(&meta.id, 2.0).expect("active");
        manager.set_status(&meta.id, Status::Running);
        manager.set_rate(&meta.id, 3.0).expect("active");
        let notes = manager.get(&meta.id).expect("active run").notes;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].text.contains("cannot write meta.json"),
            "{notes:?}"
        );
    }
}
