//! Container logs on disk, as the kubelet and CRI runtimes keep them: one directory per pod
//! (`<namespace>_<name>_<uid>`), one per container, a file per restart (`<restartCount>.log`), each line
//! `<RFC 3339 nanos> <stdout|stderr> <F|P> <text>` (P for a partial line of a longer one). A file is rotated at its
//! size cap (two rotated files are kept). [`read`] serves `kubectl logs` (tailLines, sinceSeconds, timestamps,
//! previous, limitBytes); following is polling the file for growth.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Longer lines are split into partial lines of this size, as containerd splits them.
pub const MAX_LINE: usize = 16 * 1024;
/// Rotated files kept beside the current one.
pub const ROTATED_KEPT: usize = 2;

/// The directory of one pod's logs.
pub fn pod_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

/// The log file of one run of a container.
pub fn file(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart}.log"))
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends a container's output to its log file, rotating it at `max_bytes`.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: fs::File,
    written: u64,
    max_bytes: u64,
}

impl Writer {
    pub fn create(path: PathBuf, max_bytes: u64) -> io::Result<Writer> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer {
            path,
            file,
            written,
            max_bytes,
        })
    }

    /// Writes one line (without its newline); a line longer than [`MAX_LINE`] becomes partial lines.
    pub fn line(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let stamp = k8s_openapi::jiff::Timestamp::now();
        let chunks: Vec<&[u8]> = if text.is_empty() {
            vec![text]
        } else {
            text.chunks(MAX_LINE).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let tag = if i == last { "F" } else { "P" };
            let mut record = format!("{stamp:.9} {} {tag} ", stream.as_str()).into_bytes();
            record.extend_from_slice(chunk);
            record.push(b'\n');
            self.file.write_all(&record)?;
            self.written += record.len() as u64;
        }
        if self.written >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..ROTATED_KEPT).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: String,
    pub stream: String,
    pub partial: bool,
    pub text: Vec<u8>,
}

pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stream = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        timestamp,
        stream,
        partial: tag == b"P",
        text,
    })
}

/// What `kubectl logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// The lines of one run of a container (its rotated files first), as `kubectl logs` prints them.
pub fn read(path: &Path, query: &Query) -> io::Result<(Vec<u8>, u64)> {
    let mut records = Vec::new();
    for n in (1..=ROTATED_KEPT).rev() {
        if let Ok(bytes) = fs::read(rotated(path, n)) {
            records.extend(bytes.split(|b| *b == b'\n').filter_map(parse));
        }
    }
    let current = fs::read(path)?;
    let offset = current.len() as u64;
    records.extend(current.split(|b| *b == b'\n').filter_map(parse));
    if let Some(since) = query.since {
        records.retain(|r| timestamp_seconds(&r.timestamp).is_some_and(|t| t >= since));
    }
    let mut out = render(&records, query.timestamps);
    if let Some(tail) = query.tail_lines {
        let lines: Vec<&[u8]> = out.split_inclusive(|b| *b == b'\n').collect();
        out = lines[lines.len().saturating_sub(tail)..].concat();
    }
    if let Some(limit) = query.limit_bytes {
        out.truncate(limit);
    }
    Ok((out, offset))
}

/// The new complete lines after `offset` of the current file, and the offset after them (for following).
pub fn read_from(path: &Path, offset: u64, timestamps: bool) -> io::Result<(Vec<u8>, u64)> {
    let bytes = fs::read(path)?;
    if (bytes.len() as u64) < offset {
        // Rotated since the last read: the new file is all new.
        return read_from(path, 0, timestamps);
    }
    let new = &bytes[offset as usize..];
    let complete = new
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let records: Vec<Record> = new[..complete]
        .split(|b| *b == b'\n')
        .filter_map(parse)
        .collect();
    Ok((render(&records, timestamps), offset + complete as u64))
}

fn render(records: &[Record], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for r in records {
        if timestamps && line_start {
            out.extend_from_slice(r.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&r.text);
        if r.partial {
            line_start = false;
        } else {
            out.push(b'\n');
            line_start = true;
        }
    }
    out
}

fn timestamp_seconds(stamp: &str) -> Option<f64> {
    let t: k8s_openapi::jiff::Timestamp = stamp.parse().ok()?;
    Some(t.as_nanosecond() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_partials_tails_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "c", 0);
        let mut w = Writer::create(path.clone(), 1 << 20).unwrap();
        w.line(Stream::Stdout, b"first").unwrap();
        w.line(Stream::Stderr, &vec![b'x'; MAX_LINE + 5]).unwrap();
        w.line(Stream::Stdout, b"third").unwrap();
        let (all, _) = read(&path, &Query::default()).unwrap();
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "a partial line is joined back");
        assert_eq!(lines[1].len(), MAX_LINE + 5);
        let (tail, _) = read(
            &path,
            &Query {
                tail_lines: Some(1),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(tail, b"third\n");
        let (stamped, _) = read(
            &path,
            &Query {
                timestamps: true,
                tail_lines: Some(1),
                ..Query::default()
            },
        )
        .unwrap();
        assert!(String::from_utf8(stamped).unwrap().ends_with("Z third\n"));

        let mut small = Writer::create(file(dir.path(), "r", 0), 100).unwrap();
        for i in 0..20 {
            small
                .line(Stream::Stdout, format!("line {i}").as_bytes())
                .unwrap();
        }
        let (kept, _) = read(&file(dir.path(), "r", 0), &Query::default()).unwrap();
        let kept = String::from_utf8(kept).unwrap();
        assert!(kept.ends_with("line 19\n"));
        assert!(
            !kept.contains("line 0\n"),
            "the oldest rotated file is dropped"
        );
    }

    #[test]
    fn following_reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "c", 0);
        let mut w = Writer::create(path.clone(), 1 << 20).unwrap();
        w.line(Stream::Stdout, b"a").unwrap();
        let (first, offset) = read_from(&path, 0, false).unwrap();
        assert_eq!(first, b"a\n");
        w.line(Stream::Stdout, b"b").unwrap();
        let (next, _) = read_from(&path, offset, false).unwrap();
        assert_eq!(next, b"b\n");
    }
}
