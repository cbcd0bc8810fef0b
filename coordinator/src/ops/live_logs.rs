//! Live job logs: the pieces of a running attempt's stdout/stderr a worker streams,
//! fenced by the attempt, stored with [`crate::store::live_logs`].

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::store::live_feed::{LiveEvent, LogPiece};
use crate::store::live_logs::{
    append_piece, check_stream, final_path, partial_path, Appended, MAX_CHUNK_BYTES,
};
use expcluster_core::{AttemptNumber, JobId, WorkerId};

impl CoordinatorState {
    /// Stores a piece of a running attempt's log; fenced like every worker report.
    pub fn append_log(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        stream: &str,
        offset: u64,
        content: &[u8],
    ) -> Result<Appended, CoordinatorError> {
        check_stream(stream)?;
        if content.len() > MAX_CHUNK_BYTES {
            return Err(CoordinatorError::InvalidRequest(format!(
                "a log piece carries at most {MAX_CHUNK_BYTES} bytes, not {}",
                content.len()
            )));
        }
        self.current_attempt(worker, job_id, attempt)?;
        let logs = self.workspace.logs_dir();
        if final_path(&logs, job_id, attempt, stream).exists() {
            // The whole log is stored already; a late piece must not revive the partial.
            return Ok(Appended {
                stored: offset + content.len() as u64,
                full: true,
            });
        }
        let appended = append_piece(
            &partial_path(&logs, job_id, attempt, stream),
            offset,
            content,
        )
        .map_err(CoordinatorError::storage)?;
        self.live.publish(|| {
            LiveEvent::Log(std::sync::Arc::new(LogPiece {
                job: job_id.clone(),
                attempt,
                stream: stream.to_owned(),
                offset,
                content: content.to_vec(),
            }))
        });
        Ok(appended)
    }

    /// Removes the live log once the final one is stored (called after a log upload).
    pub fn drop_partial_log(&self, job_id: &JobId, attempt: AttemptNumber, stream: &str) {
        if check_stream(stream).is_err() {
            return;
        }
        let path = partial_path(&self.workspace.logs_dir(), job_id, attempt, stream);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(path = %path.display(), %err, "cannot remove a live log"),
        }
    }
}
