//! `logs/experiment_log.txt`, the research log's human-readable twin, appended by a
//! thread of its own.
//!
//! Each event's line used to be appended (open, write, close) under the state mutex,
//! which every lease and completion takes: about 12 us per event, a fifth of a
//! completion's time under the lock once dispatch ran over sessions (docs/performance-history.md). The
//! file is derived from `research_log.jsonl`: nothing reads it back, recovery never
//! needs it, and it was never fsynced. So its lines go, in order, to a writer thread,
//! which appends whatever has queued up in one write. Dropping the log waits for the
//! thread, so every line is in the file once the coordinator is gone.
//!
//! The lines are formatted straight into one shared buffer, which the thread swaps for
//! its spare and writes whole: a `String` per line sent over a channel cost, at the
//! dispatch benchmark's 10,000 and more events/s, a tenth of the process's CPU in the
//! writer thread alone, most of it glibc freeing memory another thread had allocated.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after a write, so a burst of events costs a
/// few writes and wake-ups rather than one per event.
const GATHER: Duration = Duration::from_millis(2);
/// Capacity the writer's spare buffer keeps after a large burst.
const KEEP_CAPACITY: usize = 1 << 20;

pub struct TextLog {
    path: PathBuf,
    shared: Arc<Shared>,
    /// `None` when the writer thread could not be started: lines are then appended
    /// synchronously, as before.
    writer: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer (only when it waits: a notify is a system call).
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    text: String,
    writer_waiting: bool,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TextLog {
    pub fn new(path: PathBuf) -> Self {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("experiment-log".into())
            .spawn(move || write_lines(&thread_path, &thread_shared));
        let writer = spawned
            .inspect_err(|err| {
                tracing::warn!(%err, "no thread for logs/experiment_log.txt; appending it inline");
            })
            .ok();
        Self {
            path,
            shared,
            writer,
        }
    }

    /// Queues one line (`line` ends with a newline) for the file.
    pub fn append(&self, line: std::fmt::Arguments<'_>) {
        if self.writer.is_none() {
            append(&self.path, &line.to_string());
            return;
        }
        let mut pending = self.shared.lock();
        // Writing into a String cannot fail.
        let _ = pending.text.write_fmt(line);
        if pending.writer_waiting {
            pending.writer_waiting = false;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for TextLog {
    fn drop(&mut self) {
        // The thread ends once it has written what is queued.
        {
            let mut pending = self.shared.lock();
            pending.closed = true;
            self.shared.wake.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_lines(path: &Path, shared: &Shared) {
    let mut spare = String::new();
    let mut file: Option<std::fs::File> = None;
    loop {
        {
            let mut pending = shared.lock();
            while pending.text.is_empty() && !pending.closed {
                pending.writer_waiting = true;
                pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            pending.writer_waiting = false;
            if pending.text.is_empty() {
                return;
            }
            std::mem::swap(&mut pending.text, &mut spare);
        }
        // Kept open between writes; opened again after a failure (a removed logs/).
        let open = match file.take() {
            Some(open) => Ok(open),
            None => crate::store::workspace::open_append(path),
        };
        match open.and_then(|mut open| open.write_all(spare.as_bytes()).map(|()| open)) {
            Ok(open) => file = Some(open),
            Err(err) => tracing::warn!(%err, "cannot append to logs/experiment_log.txt"),
        }
        spare.clear();
        spare.shrink_to(KEEP_CAPACITY);
        std::thread::sleep(GATHER);
    }
}

fn append(path: &Path, text: &str) {
    if let Err(err) = crate::store::workspace::append_text(path, text) {
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
            log.append(format_args!("{line}"));
        }
        drop(log);
        let expected = format!("earlier\n{}", lines.concat());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }
}
