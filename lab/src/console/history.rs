//! Run history on disk: `<runs-dir>/<id>/` holds `meta.json` (RunMeta, rewritten on every status change),
//! `samples.jsonl` and `notes.jsonl` (appended live), the lab's own files (report.json, decisions.jsonl, ...) and, once
//! the run has ended, `run.json` (the whole RunData). A run whose process died mid-way is read back from its meta and
//! samples and shown as failed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::api::{Note, RunData, RunMeta, Sample, Status};

/// The runs directory.
#[derive(Debug, Clone)]
pub struct History {
    root: PathBuf,
}

impl History {
    pub fn new(root: PathBuf) -> History {
        History { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Is `id` a plain run id (no path separators, no dots at the start)? Anything else is never looked up on disk.
    pub fn valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 120
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }

    /// A new id from the start time and the profile name, unique in the directory; its directory is created.
    pub fn create(&self, stamp: &str, profile: &str) -> std::io::Result<String> {
        let name: String = profile
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        std::fs::create_dir_all(&self.root)?;
        for n in 1.. {
            let id = if n == 1 {
                format!("{stamp}-{name}")
            } else {
                format!("{stamp}-{name}-{n}")
            };
            match std::fs::create_dir(self.dir(&id)) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("an unbounded counter ends in a free name")
    }

    pub fn write_meta(&self, meta: &RunMeta) -> std::io::Result<()> {
        write_json(&self.dir(&meta.id).join("meta.json"), meta)
    }

    pub fn append_sample(&self, id: &str, sample: &Sample) -> std::io::Result<()> {
        append_line(&self.dir(id).join("samples.jsonl"), sample)
    }

    pub fn append_note(&self, id: &str, note: &Note) -> std::io::Result<()> {
        append_line(&self.dir(id).join("notes.jsonl"), note)
    }

    pub fn write_run(&self, data: &RunData) -> std::io::Result<()> {
        write_json(&self.dir(&data.meta.id).join("run.json"), data)
    }

    /// Every run on disk, newest first (ids sort by start time).
    pub fn list(&self) -> Vec<RunMeta> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut metas: Vec<RunMeta> = entries
            .filter_map(Result::ok)
            .filter_map(|e| read_json::<RunMeta>(&e.path().join("meta.json")))
            .map(orphaned)
            .collect();
        metas.sort_by(|a, b| b.id.cmp(&a.id));
        metas
    }

    /// A run read back from disk: run.json when it ended, else its meta, samples and notes so far.
    pub fn read(&self, id: &str) -> Option<RunData> {
        if !History::valid_id(id) {
            return None;
        }
        let dir = self.dir(id);
        if let Some(data) = read_json::<RunData>(&dir.join("run.json")) {
            return Some(data);
        }
        let meta = orphaned(read_json::<RunMeta>(&dir.join("meta.json"))?);
        let samples = read_lines::<Sample>(&dir.join("samples.jsonl"));
        let mut notes = read_lines::<Note>(&dir.join("notes.jsonl"));
        // A line cut short by a crash mid-write, or edited by hand: the run is still shown, and says what it misses.
        for (file, corrupt) in [
            ("samples.jsonl", samples.corrupt),
            ("notes.jsonl", notes.corrupt),
        ] {
            if corrupt > 0 {
                tracing::warn!(run = %id, file, corrupt, "corrupt lines skipped in the run's history");
                notes.values.push(Note {
                    t_s: samples.values.last().map_or(0.0, |s| s.t_s),
                    text: format!(
                        "{corrupt} corrupt line(s) of {file} skipped: the run's record misses them"
                    ),
                });
            }
        }
        Some(RunData {
            meta,
            samples: samples.values,
            decisions: Vec::new(),
            notes: notes.values,
            triggers: Vec::new(),
            phases: Vec::new(),
            scale_events: Vec::new(),
            report: None,
        })
    }

    pub fn delete(&self, id: &str) -> std::io::Result<bool> {
        if !History::valid_id(id) || !self.dir(id).join("meta.json").is_file() {
            return Ok(false);
        }
        std::fs::remove_dir_all(self.dir(id))?;
        Ok(true)
    }
}

/// A run left unfinished on disk by a process that is gone: it ended without its final status.
fn orphaned(mut meta: RunMeta) -> RunMeta {
    if !meta.status.is_final() {
        meta.status = Status::Failed;
        meta.error
            .get_or_insert_with(|| "the lab process ended before the run did".into());
    }
    meta
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    // Written aside and renamed: a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

fn append_line<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A JSON-lines file read back: the lines that parsed, and how many did not.
struct Lines<T> {
    values: Vec<T>,
    corrupt: usize,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Lines<T> {
    let mut lines = Lines {
        values: Vec::new(),
        corrupt: 0,
    };
    // A file never written (no interval yet) is an empty history, not a corrupt one.
    let Ok(text) = std::fs::read_to_string(path) else {
        return lines;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(value) => lines.values.push(value),
            Err(_) => lines.corrupt += 1,
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_history_lines_are_counted_and_noted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::new(dir.path().to_path_buf());
        let id = history.create("20260101-000000", "steady").expect("create");
        let meta = serde_json::json!({
            "id": id, "label": "l", "profile": "steady", "status": "running",
            "started_at": "2026-01-01T00:00:00Z", "ended_at": null, "time_scale": 1.0, "rate_multiplier": 1.0,
            "scaledobject": "consumer", "max_replicas": null, "exit_code": null, "error": null, "summary": null
        });
        std::fs::write(history.dir(&id).join("meta.json"), meta.to_string()).expect("meta");
        std::fs::write(
            history.dir(&id).join("notes.jsonl"),
            "{\"t_s\": 1.0, \"text\": \"kept\"}\n{\"t_s\": 2.0, \"te\n",
        )
        .expect("notes");
        let data = history.read(&id).expect("read back");
        let texts: Vec<&str> = data.notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert_eq!(texts[0], "kept");
        assert!(
            texts[1].contains("1 corrupt line(s) of notes.jsonl"),
            "{texts:?}"
        );
    }
}
