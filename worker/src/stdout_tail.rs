//! Reads a command job's stdout from `stdout.log` as the job writes it.
//!
//! The job writes its stdout straight to the file (never through a pipe to the
//! worker, so that it outlives the worker: see `job_wrapper.rs`). This task reads the
//! new bytes every few milliseconds, and every line `NAME: VALUE` becomes a metric
//! point that carries where its line ends, so that a worker restarted on the same work
//! dir reads on from the end of the last point the spool holds. Other non-empty lines
//! are noted in `worker.log`. Once the job has ended (`finished` turns true) the file
//! is read to its end, the last line even without its `\n`.

use crate::reporter::MetricSender;
use expcluster_core::metric_line::parse_metric_line;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// How often the file is looked at while the job runs.
const POLL: Duration = Duration::from_millis(25);
/// A line longer than this is not a metric: it is noted, and the rest of it skipped.
const MAX_LINE: usize = 1 << 20;

/// Where to read and where its points and notes go.
pub struct StdoutTail {
    pub stdout: PathBuf,
    /// Read from this byte on (0, or where a previous worker's last point's line ended).
    pub from: u64,
    /// `worker.log`: appended to.
    pub notes: PathBuf,
    pub metrics: MetricSender,
}

impl StdoutTail {
    /// Reads until `finished` turns true (or its sender goes), then to the end.
    pub async fn run(self, mut finished: watch::Receiver<bool>) {
        let Ok(mut file) = std::fs::File::open(&self.stdout) else {
            tracing::warn!(path = %self.stdout.display(), "cannot open the job's stdout");
            return;
        };
        if file.seek(SeekFrom::Start(self.from)).is_err() {
            return;
        }
        let mut lines = Lines {
            line_number: count_lines(&self.stdout, self.from),
            notes: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.notes)
                .ok(),
            metrics: self.metrics,
            partial: Vec::new(),
            partial_start: self.from,
            skipping: false,
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Looked at before reading: once the job is over, this read gets it all.
            let over = *finished.borrow_and_update();
            loop {
                match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(read) => lines.take(&chunk[..read]),
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        tracing::warn!(%err, "cannot read the job's stdout");
                        break;
                    }
                }
            }
            if over {
                lines.finish();
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                changed = finished.changed() => {
                    if changed.is_err() {
                        lines.finish();
                        return;
                    }
                }
            }
        }
    }
}

/// Splits bytes into lines and hands each on.
struct Lines {
    line_number: u64,
    notes: Option<std::fs::File>,
    metrics: MetricSender,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
    /// Its offset in the file.
    partial_start: u64,
    /// The rest of an over-long line is being skipped.
    skipping: bool,
}

impl Lines {
    fn take(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            let end = self.partial_start + self.partial.len() as u64 + newline as u64 + 1;
            if self.skipping {
                self.skipping = false;
            } else {
                self.partial.extend_from_slice(&bytes[..newline]);
                let line = std::mem::take(&mut self.partial);
                self.line(&line, end);
            }
            self.partial.clear();
            self.partial_start = end;
            bytes = &bytes[newline + 1..];
        }
        if self.skipping {
            self.partial_start += bytes.len() as u64;
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_LINE {
            self.line_number += 1;
            self.note(&format!(
                "warning: stdout line {} is longer than {MAX_LINE} bytes, ignored",
                self.line_number
            ));
            self.partial_start += self.partial.len() as u64;
            self.partial.clear();
            self.skipping = true;
        }
    }

    /// The last line, when the job ended without a final `\n`.
    fn finish(&mut self) {
        if !self.skipping && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            let end = self.partial_start + line.len() as u64;
            self.line(&line, end);
        }
    }

    fn line(&mut self, bytes: &[u8], end: u64) {
        self.line_number += 1;
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        match parse_metric_line(text) {
            Some(metric) => self
                .metrics
                .send_from_stdout(metric.name, metric.value, end),
            None if text.trim().is_empty() => {}
            None => {
                let note = format!(
                    "warning: stdout line {} is not `NAME: VALUE`, ignored: {text}",
                    self.line_number
                );
                self.note(&note);
            }
        }
    }

    fn note(&mut self, note: &str) {
        if let Some(file) = self.notes.as_mut() {
            let _ = writeln!(file, "{note}");
        }
    }
}

/// Lines before byte `end` of `path` (so notes keep their line numbers on a resume).
fn count_lines(path: &std::path::Path, end: u64) -> u64 {
    if end == 0 {
        return 0;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut reader = std::io::BufReader::new(file.take(end));
    let mut count = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(read) = reader.read(&mut chunk) {
        if read == 0 {
            break;
        }
        count += chunk[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
    count
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reporter::Produced;

    fn produced(name: &str, value: f64, end: u64) -> Produced {
        Produced {
            name: name.into(),
            value,
            stdout_end: Some(end),
        }
    }

    async fn tail(dir: &std::path::Path, from: u64) -> Vec<Produced> {
        let (metrics, mut rx) = MetricSender::capturing();
        let tail = StdoutTail {
            stdout: dir.join("stdout.log"),
            from,
            notes: dir.join("worker.log"),
            metrics,
        };
        let (_finished, finished_rx) = watch::channel(true);
        tail.run(finished_rx).await;
        let mut points = Vec::new();
        while let Ok(point) = rx.try_recv() {
            points.push(point);
        }
        points
    }

    #[tokio::test]
    async fn points_carry_where_their_line_ends_and_a_resume_reads_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        // "loss: 1\n" is 8 bytes, "hello\n" 6, "acc: 0.5\r\n" 10, and the last line
        // has no newline.
        std::fs::write(
            dir.path().join("stdout.log"),
            "loss: 1\nhello\nacc: 0.5\r\n\nloss: 2",
        )
        .unwrap();
        assert_eq!(
            tail(dir.path(), 0).await,
            vec![
                produced("loss", 1.0, 8),
                produced("acc", 0.5, 24),
                produced("loss", 2.0, 32),
            ]
        );
        let notes = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
        assert!(
            notes.contains("stdout line 2 is not `NAME: VALUE`"),
            "{notes}"
        );
        // A restarted worker whose spool ends with the point of line 3.
        std::fs::write(dir.path().join("worker.log"), "").unwrap();
        std::fs::write(
            dir.path().join("stdout.log"),
            "loss: 1\nhello\nacc: 0.5\r\n\nloss: 2\nbye\n",
        )
        .unwrap();
        assert_eq!(tail(dir.path(), 24).await, vec![produced("loss", 2.0, 33)]);
        let notes = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
        assert!(
            notes.contains("stdout line 6 is not"),
            "line numbers go on: {notes}"
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(MAX_LINE + 10);
        std::fs::write(
            dir.path().join("stdout.log"),
            format!("{long}: 1\nloss: 3\n"),
        )
        .unwrap();
        let end = (long.len() + 4 + 8) as u64;
        assert_eq!(tail(dir.path(), 0).await, vec![produced("loss", 3.0, end)]);
    }
}
