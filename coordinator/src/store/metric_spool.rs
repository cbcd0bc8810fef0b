//! An attempt's metric spool, `.expcluster/metrics/<job>.a<N>.jsonl`: every metric
//! point the coordinator acknowledged, one `[seq,"name",step,"value"]` line each
//! (formatted by [`crate::store::metric_batch`]), so a restart reloads the series of a
//! running attempt and recovery can rebuild a succeeded attempt's results line.
//!
//! It is kept apart from the job's record (which is plain data in
//! [`crate::ops::records`]) so the state machine holds no file handles.

use crate::store::durable::AppendGuard;
use expcluster_core::{AttemptNumber, JobId};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The open spool of a job's current attempt.
#[derive(Debug)]
pub struct MetricSpool {
    file: File,
    guard: AppendGuard,
}

impl MetricSpool {
    /// Where the spool of `job`'s `attempt` lives under the coordinator's state dir.
    pub fn path(state_dir: &Path, job: &JobId, attempt: AttemptNumber) -> PathBuf {
        state_dir
            .join("metrics")
            .join(format!("{job}.a{attempt}.jsonl"))
    }

    /// Opens the attempt's spool for appending. `fresh`: the attempt's first point
    /// starts the file afresh, since a spool of the same name left by an earlier run
    /// of this job (a rerun stage) is not this attempt's.
    pub fn open(
        state_dir: &Path,
        job: &JobId,
        attempt: AttemptNumber,
        fresh: bool,
    ) -> io::Result<Self> {
        let path = Self::path(state_dir, job, attempt);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if fresh {
            file.set_len(0)?;
        }
        Ok(Self {
            file,
            guard: AppendGuard::default(),
        })
    }

    /// Appends spool lines durably (or for the next group commit), all or nothing.
    pub fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.guard.append(&mut self.file, lines)
    }
}
