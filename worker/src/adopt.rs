//! Carrying on the attempts the previous worker on this work dir left: a worker
//! restarted on the same node (after kill -9, a crash, an OOM kill) takes over the
//! command jobs that outlived it, so that no attempt runs twice and no metric is lost.
//!
//! At start-up the worker holds the work dir (`work_dir.rs`), so the previous worker
//! is dead. For each attempt record it finds (`attempt_record.rs`):
//!
//! - the job still runs, or it ended while no worker was there and its wrapper wrote
//!   its exit status (`job_wrapper.rs`), and its metric spool reads back whole: the
//!   attempt is claimed (and held, so its watchdog leaves it alone while the
//!   coordinator is asked);
//! - otherwise (its processes are gone with no exit status, or the spool is damaged)
//!   it is given up: whatever is left of its process group is killed and the record
//!   removed, and the coordinator requeues the attempt (reason `worker_restarted`,
//!   no failure budget spent).
//!
//! The worker then registers naming its previous id and the claimed attempts. Those
//! the coordinator moves to the new id are carried on: the spool is sent again (the
//! coordinator stores each sequence number once), stdout is read on from the end of
//! the last spooled point's line, and the end is reported as usual, by the exit file
//! when the job ended meanwhile. The coordinator refuses a claim on an attempt it has
//! already requeued (the lease ran out first): that job is killed.
//!
//! Trainer jobs run inside the worker and died with it: they are not claimed, and the
//! coordinator requeues them at once; they resume from their last checkpoint.

use crate::attempt_record::{self, AttemptRecord, ProcessState};
use crate::command::{carry_on_command, StopReason};
use crate::job_dir::JobDir;
use crate::job_wrapper::recorded_end;
use crate::reporter;
use crate::runner::{report_end, Ran, WorkerContext};
use crate::spool::{Reopened, Spool};
use expcluster_proto::v1;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// An attempt of the previous worker that this one can carry on.
pub struct Claim {
    pub dir: PathBuf,
    pub record: AttemptRecord,
    pub spool: Reopened,
}

impl Claim {
    pub fn attempt_ref(&self) -> v1::AttemptRef {
        v1::AttemptRef {
            job_id: self.record.job_id.clone(),
            attempt: self.record.attempt,
        }
    }

    /// Stops the job and forgets the attempt (the coordinator did not hand it over).
    pub fn give_up(self) {
        give_up(&self.dir, &self.record);
    }
}

/// The attempts under `work_dir` that can be carried on; the others are given up.
pub fn claims(work_dir: &Path) -> Vec<Claim> {
    let mut claims = Vec::new();
    for (dir, record) in attempt_record::find_all(work_dir) {
        let running = record.process.state() == ProcessState::Running;
        if !running && recorded_end(&dir).is_none() {
            tracing::warn!(job_id = %record.job_id, attempt = record.attempt, "the job's processes are gone and left no exit status; its attempt is given up");
            give_up(&dir, &record);
            continue;
        }
        match Spool::reopen(&dir.join("metrics.spool.jsonl"), reporter::MEMORY_CAP) {
            Ok(spool) => claims.push(Claim { dir, record, spool }),
            Err(err) => {
                tracing::warn!(job_id = %record.job_id, attempt = record.attempt, %err, "the attempt's metric spool cannot be read back; its attempt is given up");
                give_up(&dir, &record);
            }
        }
    }
    claims
}

/// Kills what is left of the attempt's process group and removes its record.
fn give_up(dir: &Path, record: &AttemptRecord) {
    // A pid now used by another process means the group is empty (a pid that is
    // still a group's id is never reused).
    if record.process.state() != ProcessState::Reused {
        let _ = killpg(Pid::from_raw(record.process.pid), Signal::SIGKILL);
    }
    AttemptRecord::remove(dir);
}

/// Carries a claimed attempt on to its reported end.
pub async fn carry_on(
    context: Arc<WorkerContext>,
    claim: Claim,
    stop: watch::Receiver<Option<StopReason>>,
    slot_free: tokio::sync::oneshot::Sender<()>,
) {
    let Claim { dir, record, spool } = claim;
    tracing::info!(job_id = %record.job_id, attempt = record.attempt, worker_id = %context.worker_id, "carrying on an attempt of the previous worker");
    let spec = v1::JobSpec {
        job_id: record.job_id.clone(),
        attempt: record.attempt,
        timeout_ms: record.timeout_ms,
        ..Default::default()
    };
    let dir = JobDir::existing(&context.work_dir, dir);
    let stdout_from = spool.stdout_end;
    let (metrics, reporter) = reporter::resume(
        context.client.clone(),
        context.worker_id.clone(),
        record.job_id.clone(),
        record.attempt,
        spool,
    );
    let live_logs = crate::log_stream::start(&context, &spec, &dir.root);
    let timeout = Duration::from_millis(record.timeout_ms.max(1));
    let elapsed = Duration::from_millis(unix_ms().saturating_sub(record.started_unix_ms));
    let deadline = tokio::time::Instant::now() + timeout.saturating_sub(elapsed);
    let (end, stderr_tail) = carry_on_command(
        record.process,
        &dir.root,
        stdout_from,
        metrics,
        stop,
        deadline,
    )
    .await;
    live_logs.stop();
    let _ = slot_free.send(());
    let ran = Ran {
        end,
        error: String::new(),
        stderr_tail,
        timeout,
        started: Instant::now()
            .checked_sub(elapsed)
            .unwrap_or_else(Instant::now),
    };
    report_end(&context, &spec, &dir, ran, Some(reporter)).await;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
