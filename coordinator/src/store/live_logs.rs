//! Live logs: a running attempt's stdout, stderr and worker log, stored piece by piece
//! while it runs, so `expcluster logs --follow` shows output before the attempt ends.
//!
//! Workers upload each log whole when an attempt ends (`logs/<job>.a<N>.<stream>.log`,
//! see `completion.rs`). While the attempt runs they also send what is new about every
//! second (`AppendLog`). Those pieces go to a `.partial` file next to the final log;
//! the final upload supersedes it and the partial file is removed. Readers take the
//! final log when there is one, the partial one otherwise.
//!
//! Every piece carries its byte offset in the worker's file. A piece that overlaps
//! what is stored is trimmed (a resend after a lost answer writes nothing twice). A
//! piece that starts past the end is a gap and is not written. Either way the answer
//! says how many bytes are stored, and the worker sends from there next. A live log
//! stops growing at [`MAX_LIVE_LOG_BYTES`]; the final upload keeps the log's tail.
//!
//! Live logs are a convenience, not part of the record, so they are not fsynced: a
//! crash may lose a piece, and the next piece is then a gap that the worker fills.

use crate::error::CoordinatorError;
use expcluster_core::{AttemptNumber, JobId};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The most one live log may hold (the same size as a final log upload).
pub const MAX_LIVE_LOG_BYTES: u64 = expcluster_proto::MAX_LIVE_LOG_BYTES;
/// The most one piece may carry.
pub const MAX_CHUNK_BYTES: usize = expcluster_proto::MAX_LOG_CHUNK_BYTES;

/// The log streams an attempt has.
pub const STREAMS: [&str; 3] = ["stdout", "stderr", "worker"];

/// Where a piece goes, given how much of the log is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Append `content[skip..skip + take]` (`take` may be 0: all of it is stored
    /// already, or the log is full).
    Append { skip: usize, take: usize },
    /// The piece starts past the stored end: nothing is written.
    Gap,
}

/// Decides what a piece of `len` bytes at `offset` adds to a log holding `stored`
/// bytes, at most `cap` in all.
pub fn plan(stored: u64, offset: u64, len: usize, cap: u64) -> Plan {
    if offset > stored {
        return Plan::Gap;
    }
    let skip = usize::try_from(stored - offset).map_or(len, |overlap| overlap.min(len));
    let room = cap.saturating_sub(stored);
    let take = usize::try_from(room).map_or(len - skip, |room| room.min(len - skip));
    Plan::Append { skip, take }
}

/// The answer to a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Bytes of the stream held now; the worker sends from here next.
    pub stored: u64,
    /// Nothing more of this stream is kept live: the worker stops sending it.
    pub full: bool,
}

/// A stored log of an attempt, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLog {
    pub path: PathBuf,
    /// True for a live (`.partial`) log, which may still grow.
    pub partial: bool,
}

/// `<logs>/<job>.a<attempt>.<stream>.log`, where the final upload goes.
pub fn final_path(logs: &Path, job: &JobId, attempt: AttemptNumber, stream: &str) -> PathBuf {
    logs.join(format!("{job}.a{attempt}.{stream}.log"))
}

/// The live log next to the final one.
pub fn partial_path(logs: &Path, job: &JobId, attempt: AttemptNumber, stream: &str) -> PathBuf {
    logs.join(format!("{job}.a{attempt}.{stream}.log.partial"))
}

/// The final log when there is one, else the live one, else nothing.
pub fn stored_log(
    logs: &Path,
    job: &JobId,
    attempt: AttemptNumber,
    stream: &str,
) -> Option<StoredLog> {
    let whole = final_path(logs, job, attempt, stream);
    if whole.is_file() {
        return Some(StoredLog {
            path: whole,
            partial: false,
        });
    }
    let live = partial_path(logs, job, attempt, stream);
    live.is_file().then_some(StoredLog {
        path: live,
        partial: true,
    })
}

/// Refuses a stream name that is not one of [`STREAMS`] (it becomes part of a path).
pub fn check_stream(stream: &str) -> Result<(), CoordinatorError> {
    if STREAMS.contains(&stream) {
        Ok(())
    } else {
        Err(CoordinatorError::InvalidRequest(format!(
            "log stream {stream:?} must be stdout, stderr or worker"
        )))
    }
}

/// Appends the new part of a piece to `path` (created if missing).
pub fn append_piece(path: &Path, offset: u64, content: &[u8]) -> std::io::Result<Appended> {
    let stored = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(err),
    };
    let Plan::Append { skip, take } = plan(stored, offset, content.len(), MAX_LIVE_LOG_BYTES)
    else {
        return Ok(Appended {
            stored,
            full: stored >= MAX_LIVE_LOG_BYTES,
        });
    };
    if take > 0 {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(&content[skip..skip + take])?;
    }
    let stored = stored + take as u64;
    Ok(Appended {
        stored,
        full: stored >= MAX_LIVE_LOG_BYTES,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_piece_is_appended_trimmed_or_refused_by_its_offset() {
        // In order: all of it.
        assert_eq!(plan(0, 0, 5, 100), Plan::Append { skip: 0, take: 5 });
        assert_eq!(plan(5, 5, 3, 100), Plan::Append { skip: 0, take: 3 });
        // A resend of stored bytes: nothing.
        assert_eq!(plan(8, 5, 3, 100), Plan::Append { skip: 3, take: 0 });
        assert_eq!(plan(8, 0, 5, 100), Plan::Append { skip: 5, take: 0 });
        // Overlapping: only the new tail.
        assert_eq!(plan(8, 6, 4, 100), Plan::Append { skip: 2, take: 2 });
        // Past the end: a gap.
        assert_eq!(plan(8, 9, 4, 100), Plan::Gap);
        // At the cap: only what fits.
        assert_eq!(plan(98, 98, 5, 100), Plan::Append { skip: 0, take: 2 });
        assert_eq!(plan(100, 100, 5, 100), Plan::Append { skip: 0, take: 0 });
    }

    #[test]
    fn resends_and_gaps_leave_the_stored_log_exactly_the_workers_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("j.a1.stdout.log.partial");
        let text = b"first line\nsecond line\nthird line\n";
        let first = append_piece(&path, 0, &text[..11]).unwrap();
        assert_eq!(
            first,
            Appended {
                stored: 11,
                full: false
            }
        );
        // The answer was lost: the same piece again changes nothing.
        assert_eq!(append_piece(&path, 0, &text[..11]).unwrap().stored, 11);
        // A piece after a lost one is a gap: refused, and the answer says where to resume.
        let gap = append_piece(&path, 23, &text[23..]).unwrap();
        assert_eq!(
            gap,
            Appended {
                stored: 11,
                full: false
            }
        );
        // The worker resends from there, overlapping what is stored.
        assert_eq!(
            append_piece(&path, 5, &text[5..]).unwrap().stored,
            text.len() as u64
        );
        assert_eq!(std::fs::read(&path).unwrap(), text);
    }

    #[test]
    fn stream_names_outside_the_three_are_refused() {
        for stream in ["stdout", "stderr", "worker"] {
            assert!(check_stream(stream).is_ok());
        }
        for stream in ["../x", "stdout/../../y", "", "std out"] {
            assert!(check_stream(stream).is_err(), "{stream}");
        }
    }
}
