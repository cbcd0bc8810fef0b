//! Live logs: while an attempt runs, the new bytes of its stdout, stderr and worker
//! log files go to the coordinator (`AppendLog`), so `expcluster logs --follow` shows
//! a running job's output, not only that of finished attempts.
//!
//! The job's own pipes are read elsewhere (`command.rs`) and written to the files in
//! the job directory; this task only reads those files, on its own, so it can never
//! block or slow the job. Every quarter second it looks at each file and sends what
//! is new once a second has passed since the last piece, or at once when a full piece
//! ([`MAX_LOG_CHUNK_BYTES`]) is waiting. Each piece carries its offset in the file; the
//! coordinator answers how much of the stream it holds, and the next piece starts
//! there. A lost answer therefore only means a resend that the coordinator trims, and a
//! lost piece is a gap the coordinator refuses and the worker fills.
//!
//! Failures never touch the job: an unreachable coordinator is retried with backoff,
//! and a refusal (the attempt is no longer current, or an older coordinator without
//! this call) ends the streaming. The final log upload when the attempt ends is the
//! record; live pieces are only a preview of it.

use crate::client::{is_retryable, WorkerClient};
use crate::runner::WorkerContext;
use expcluster_proto::v1;
use expcluster_proto::{MAX_LIVE_LOG_BYTES, MAX_LOG_CHUNK_BYTES};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the log files are looked at.
const POLL: Duration = Duration::from_millis(250);
/// The longest new bytes wait before they are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Pieces one stream may send per look, so one chatty stream does not starve the rest.
const PIECES_PER_POLL: usize = 16;
/// The longest one `AppendLog` call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The streaming task of one attempt; dropping it stops the streaming.
pub struct LiveLogs {
    task: JoinHandle<()>,
}

impl LiveLogs {
    /// Stops streaming (call it before the final log upload).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for LiveLogs {
    fn drop(&mut self) {
        // A piece in flight may still land: the coordinator ignores pieces of a log
        // whose final upload it has, so this never revives a live log.
        self.task.abort();
    }
}

/// Which attempt the pieces belong to.
#[derive(Debug, Clone)]
struct AttemptIds {
    worker_id: String,
    job_id: String,
    attempt: u32,
}

/// Starts streaming the logs of the attempt `spec` from its job directory `dir`.
pub fn start(context: &WorkerContext, spec: &v1::JobSpec, dir: &Path) -> LiveLogs {
    let ids = AttemptIds {
        worker_id: context.worker_id.clone(),
        job_id: spec.job_id.clone(),
        attempt: spec.attempt,
    };
    let cursors = ["stdout", "stderr", "worker"]
        .map(|stream| Cursor::new(stream, dir.join(format!("{stream}.log"))))
        .into();
    LiveLogs {
        task: tokio::spawn(run(context.client.clone(), ids, cursors)),
    }
}

/// Where one stream stands.
#[derive(Debug)]
pub struct Cursor {
    pub stream: &'static str,
    pub path: PathBuf,
    /// Bytes the coordinator holds; the next piece starts here.
    pub sent: u64,
    /// When the last piece went out (or the cursor was made).
    pub last_send: Instant,
    /// No retry before this instant (after a failed call).
    pub not_before: Instant,
    pub backoff: Duration,
    /// Nothing more is sent for this stream.
    pub done: bool,
}

impl Cursor {
    pub fn new(stream: &'static str, path: PathBuf) -> Self {
        let now = Instant::now();
        Self {
            stream,
            path,
            sent: 0,
            last_send: now,
            not_before: now,
            backoff: POLL,
            done: false,
        }
    }

    /// The next piece to send, as (offset, length), when one is due: a full piece at
    /// once, a shorter one after [`FLUSH_EVERY`].
    pub fn due(&self, file_len: u64, now: Instant) -> Option<(u64, usize)> {
        if self.done || now < self.not_before {
            return None;
        }
        let limit = file_len.min(MAX_LIVE_LOG_BYTES);
        let pending = limit.saturating_sub(self.sent);
        let full = pending >= MAX_LOG_CHUNK_BYTES as u64;
        let waited = now.duration_since(self.last_send) >= FLUSH_EVERY;
        if pending == 0 || !(full || waited) {
            return None;
        }
        let length = pending.min(MAX_LOG_CHUNK_BYTES as u64) as usize;
        Some((self.sent, length))
    }

    /// Takes the coordinator's answer: it holds `stored` bytes (possibly fewer than
    /// were sent, after a gap), and `full` says it wants no more.
    pub fn acknowledged(&mut self, stored: u64, full: bool, now: Instant) {
        self.sent = stored;
        self.last_send = now;
        self.backoff = POLL;
        self.not_before = now;
        self.done = full || stored >= MAX_LIVE_LOG_BYTES;
    }

    /// A call failed in a way worth retrying: wait, longer each time.
    pub fn failed(&mut self, now: Instant) {
        self.not_before = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

async fn run(mut client: WorkerClient, ids: AttemptIds, mut cursors: Vec<Cursor>) {
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for cursor in cursors.iter_mut() {
            for _ in 0..PIECES_PER_POLL {
                let Ok(meta) = std::fs::metadata(&cursor.path) else {
                    break;
                };
                let Some((offset, length)) = cursor.due(meta.len(), Instant::now()) else {
                    break;
                };
                let content = match read_piece(&cursor.path, offset, length) {
                    Ok(content) if !content.is_empty() => content,
                    _ => break,
                };
                let chunk = v1::LogChunk {
                    worker_id: ids.worker_id.clone(),
                    job_id: ids.job_id.clone(),
                    attempt: ids.attempt,
                    stream: cursor.stream.to_owned(),
                    offset,
                    content,
                };
                let answer = tokio::time::timeout(CALL_TIMEOUT, client.append_log(chunk)).await;
                match answer {
                    Ok(Ok(ack)) => {
                        let ack = ack.into_inner();
                        cursor.acknowledged(ack.stored, ack.full, Instant::now());
                    }
                    Ok(Err(status)) if !is_retryable(&status) => {
                        // Fenced off, or a coordinator without live logs: the final
                        // upload still carries the logs.
                        tracing::debug!(job_id = %ids.job_id, attempt = ids.attempt, %status, "live log streaming stopped");
                        return;
                    }
                    Ok(Err(_)) | Err(_) => {
                        cursor.failed(Instant::now());
                        break;
                    }
                }
            }
        }
        if cursors.iter().all(|cursor| cursor.done) {
            return;
        }
    }
}

/// Up to `length` bytes of `path` from `offset` (a small local read).
fn read_piece(path: &Path, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut content = Vec::with_capacity(length);
    file.take(length as u64).read_to_end(&mut content)?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHUNK: u64 = MAX_LOG_CHUNK_BYTES as u64;

    fn cursor() -> Cursor {
        Cursor::new("stdout", PathBuf::from("stdout.log"))
    }

    #[test]
    fn a_short_piece_waits_a_second_and_a_full_one_goes_at_once() {
        let mut cursor = cursor();
        let start = cursor.last_send;
        assert_eq!(cursor.due(0, start + FLUSH_EVERY), None, "nothing new");
        assert_eq!(cursor.due(10, start), None, "10 bytes wait");
        assert_eq!(cursor.due(10, start + FLUSH_EVERY), Some((0, 10)));
        assert_eq!(
            cursor.due(3 * CHUNK + 5, start),
            Some((0, MAX_LOG_CHUNK_BYTES)),
            "a full piece goes at once, capped"
        );
        cursor.acknowledged(CHUNK, false, start);
        assert_eq!(
            cursor.due(3 * CHUNK + 5, start),
            Some((CHUNK, MAX_LOG_CHUNK_BYTES))
        );
        cursor.acknowledged(3 * CHUNK, false, start);
        assert_eq!(cursor.due(3 * CHUNK + 5, start), None);
        assert_eq!(
            cursor.due(3 * CHUNK + 5, start + FLUSH_EVERY),
            Some((3 * CHUNK, 5))
        );
    }

    #[test]
    fn the_next_piece_starts_where_the_coordinator_says_it_stands() {
        let mut cursor = cursor();
        let now = cursor.last_send + FLUSH_EVERY;
        cursor.acknowledged(100, false, cursor.last_send);
        // The coordinator lost a piece (a gap): it holds 40, so the worker rewinds.
        cursor.acknowledged(40, false, cursor.last_send);
        assert_eq!(cursor.due(150, now), Some((40, 110)));
        // It wants no more (its cap, or the final log is in): nothing is due again.
        cursor.acknowledged(150, true, cursor.last_send);
        assert_eq!(cursor.due(10 * CHUNK, now + FLUSH_EVERY), None);
    }

    #[test]
    fn failures_back_off_and_the_live_cap_stops_the_stream() {
        let mut cursor = cursor();
        let t0 = cursor.last_send + FLUSH_EVERY;
        cursor.failed(t0);
        assert_eq!(cursor.due(10, t0), None, "backing off");
        assert_eq!(cursor.due(10, t0 + POLL), Some((0, 10)));
        cursor.failed(t0);
        assert_eq!(cursor.due(10, t0 + POLL), None, "the wait doubled");
        let mut capped = self::cursor();
        capped.acknowledged(MAX_LIVE_LOG_BYTES - 3, false, t0);
        assert_eq!(
            capped.due(MAX_LIVE_LOG_BYTES + CHUNK, t0 + FLUSH_EVERY),
            Some((MAX_LIVE_LOG_BYTES - 3, 3))
        );
        capped.acknowledged(MAX_LIVE_LOG_BYTES, false, t0);
        assert!(capped.done);
    }

    #[test]
    fn a_piece_is_read_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"hello\nworld\n").unwrap();
        assert_eq!(read_piece(&path, 6, 100).unwrap(), b"world\n");
        assert_eq!(read_piece(&path, 0, 5).unwrap(), b"hello");
        assert!(read_piece(&path, 12, 10).unwrap().is_empty());
    }
}
