//! `logs/experiment_log.txt`, the research log's human-readable twin, appended by a
//! thread of its own.
//!
//! Each event's line used to be appended (open, write, close) under the state mutex,
//! which every lease and completion takes: about 12 us per event, a fifth of a
//! completion's time under the lock once dispatch ran over sessions (BENCHMARKS.md). The
//! file is derived from `research_log.jsonl`: nothing reads it back, recovery never
//! needs it, and it was never fsynced. So its lines go, in order, to a writer thread,
//! which appends whatever has queued up in one write. Dropping the log waits for the
//! thread, so every line is in the file once the coordinator is gone.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The most text one write appends, so a burst is not held in memory whole.
const MAX_WRITE: usize = 1 << 20;

pub struct TextLog {
    path: PathBuf,
    /// `None` when the writer thread could not be started: lines are then appended
    /// synchronously, as before.
    lines: Option<mpsc::Sender<String>>,
    writer: Option<JoinHandle<()>>,
}

impl TextLog {
    pub fn new(path: PathBuf) -> Self {
        let (lines, received) = mpsc::channel();
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("experiment-log".into())
            .spawn(move || write_lines(&thread_path, &received));
        match spawned {
            Ok(writer) => Self {
                path,
                lines: Some(lines),
                writer: Some(writer),
            },
            Err(err) => {
                tracing::warn!(%err, "no thread for logs/experiment_log.txt; appending it inline");
                Self {
                    path,
                    lines: None,
                    writer: None,
                }
            }
        }
    }

    /// Queues `line` (which ends with a newline) for the file.
    pub fn append(&self, line: String) {
        let unsent = match &self.lines {
            Some(lines) => lines.send(line).err().map(|unsent| unsent.0),
            None => Some(line),
        };
        if let Some(line) = unsent {
            append(&self.path, &line);
        }
    }
}

impl Drop for TextLog {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what is queued.
        self.lines = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_lines(path: &Path, received: &mpsc::Receiver<String>) {
    while let Ok(mut text) = received.recv() {
        while text.len() < MAX_WRITE {
            match received.try_recv() {
                Ok(more) => text.push_str(&more),
                Err(_) => break,
            }
        }
        append(path, &text);
    }
}

fn append(path: &Path, text: &str) {
    if let Err(err) = crate::workspace::append_text(path, text) {
        tracing::warn!(%err, "cannot append to logs/experiment_log.txt");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_line_is_in_the_file_in_order_once_the_log_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("experiment_log.txt");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = TextLog::new(path.clone());
        let lines: Vec<String> = (0..2000).map(|i| format!("event {i}\n")).collect();
        for line in &lines {
            log.append(line.clone());
        }
        drop(log);
        let expected = format!("earlier\n{}", lines.concat());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }
}
