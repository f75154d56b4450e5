//! A child's captured output: one reader task per pipe, each line kept (all of them, or the last N) and offered to
//! the `listening` parser.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use contract::listening::Listening;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The lines seen so far on stdout and stderr, in arrival order.
#[derive(Debug)]
pub(crate) struct Output {
    lines: Mutex<VecDeque<String>>,
    /// Keep only the last this many lines (a long-lived replica logs without end); `None` keeps all.
    keep: Option<usize>,
}

impl Output {
    pub(crate) fn new(keep: Option<usize>) -> Arc<Output> {
        Arc::new(Output {
            lines: Mutex::new(VecDeque::new()),
            keep,
        })
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(keep) = self.keep {
            while lines.len() >= keep.max(1) {
                lines.pop_front();
            }
        }
        lines.push_back(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }

    /// The last `n` lines, indented, for an error message.
    pub(crate) fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads `stream` to its end (so that a chatty child never blocks on a full pipe), keeping each line and sending
/// every `listening` event to `listen`. Bytes that are not UTF-8 are kept lossily rather than ending the read.
pub(crate) async fn capture(
    stream: impl AsyncRead + Unpin,
    output: Arc<Output>,
    listen: mpsc::UnboundedSender<Listening>,
    log: Option<Arc<Mutex<std::fs::File>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim_end_matches(['\n', '\r']).to_string();
                if let Some(file) = &log {
                    use std::io::Write as _;
                    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                    // A full disk loses log lines, not the child: the lines stay in `output` too.
                    let _ = writeln!(file, "{line}");
                }
                if let Some(found) = Listening::parse(&line) {
                    // Nobody listens once the child is up; that send error is expected.
                    let _ = listen.send(found);
                }
                output.push(line);
            }
        }
    }
}
