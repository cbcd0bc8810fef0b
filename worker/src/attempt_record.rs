//! What a worker keeps on disk about each command attempt it runs, so that the next
//! worker on the same work dir can take the attempt over: the job, the attempt, its
//! timeout and start, its slot, and its process (`.expcluster-attempt.json` in the
//! job directory). The metric points and how far stdout was read are in the spool
//! beside it (`spool.rs`); how the job ended, once it has, in the wrapper's exit file
//! (`job_wrapper.rs`).
//!
//! A record is written (atomically) once the job's process has started and removed
//! once the attempt's end has been reported, so a record found at start-up is an
//! attempt whose end the coordinator has not heard from this node. Only ordinary
//! (not gang) command attempts get one: a trainer job runs inside the worker and dies
//! with it, and a gang's ring breaks with any rank, so those are requeued.
//!
//! A process is known by its pid *and* its start time (`/proc/<pid>/stat`), so a pid
//! reused by another process after the job ended is never taken for the job.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The record's file name in the job directory.
pub const RECORD_FILE: &str = ".expcluster-attempt.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub job_id: String,
    pub attempt: u32,
    pub timeout_ms: u64,
    /// When the attempt started (Unix ms): its timeout runs on from there.
    pub started_unix_ms: u64,
    /// The GPU of the slot it runs on (`None`: a CPU slot).
    pub gpu: Option<String>,
    /// The job's wrapper, which leads the job's process group.
    pub process: ProcessId,
}

/// A process, told apart from a later one that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Its start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
}

/// What `/proc/<pid>/stat` says of a pid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Our process, still running.
    Running,
    /// Our process has exited (gone, or a zombie nobody reaped yet).
    Ended,
    /// The pid now belongs to another process: ours ended long ago.
    Reused,
}

impl ProcessId {
    /// The process `pid` as it is now; `None` when it does not exist.
    pub fn of(pid: i32) -> Option<Self> {
        let (start_ticks, _) = read_stat(pid)?;
        Some(Self { pid, start_ticks })
    }

    pub fn state(&self) -> ProcessState {
        match read_stat(self.pid) {
            None => ProcessState::Ended,
            Some((start, _)) if start != self.start_ticks => ProcessState::Reused,
            Some((_, 'Z' | 'X')) => ProcessState::Ended,
            Some(_) => ProcessState::Running,
        }
    }
}

/// (start time, state) from `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so the fields are counted from its closing parenthesis.
fn read_stat(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (the state) is the first after the name; field 22 the 20th.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

impl AttemptRecord {
    /// Writes the record into `dir` atomically: a temp file, fsynced, renamed over.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let temp = dir.join(format!("{RECORD_FILE}.tmp"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(RECORD_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }

    pub fn read(dir: &Path) -> io::Result<Self> {
        let text = std::fs::read(dir.join(RECORD_FILE))?;
        serde_json::from_slice(&text).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    /// Forgets the attempt in `dir` (its end is reported, or it was given up).
    pub fn remove(dir: &Path) {
        match std::fs::remove_file(dir.join(RECORD_FILE)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(dir = %dir.display(), %err, "cannot remove the attempt record; the next worker here will find the attempt over");
            }
        }
    }
}

/// Every attempt record under `<work_dir>/jobs/<job>/<attempt dir>/`, with its job
/// directory. A record that cannot be read, or that does not match the directory it
/// is in, is skipped with a warning.
pub fn find_all(work_dir: &Path) -> Vec<(PathBuf, AttemptRecord)> {
    let mut found = Vec::new();
    let Ok(jobs) = std::fs::read_dir(work_dir.join("jobs")) else {
        return found;
    };
    for job in jobs.flatten() {
        let Ok(attempts) = std::fs::read_dir(job.path()) else {
            continue;
        };
        for attempt in attempts.flatten() {
            let dir = attempt.path();
            if !dir.join(RECORD_FILE).exists() {
                continue;
            }
            match AttemptRecord::read(&dir) {
                Ok(record) if record.belongs_in(work_dir, &dir) => found.push((dir, record)),
                Ok(_) => {
                    tracing::warn!(dir = %dir.display(), "an attempt record names another job directory; ignored")
                }
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), %err, "unreadable attempt record; ignored")
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

impl AttemptRecord {
    /// Whether `dir` is this attempt's own job directory under `work_dir`.
    fn belongs_in(&self, work_dir: &Path, dir: &Path) -> bool {
        expcluster_core::ids::is_safe_name(&self.job_id)
            && dir
                == work_dir
                    .join("jobs")
                    .join(&self.job_id)
                    .join(format!("a{}", self.attempt))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(pid: i32) -> AttemptRecord {
        AttemptRecord {
            job_id: "j1".into(),
            attempt: 2,
            timeout_ms: 60_000,
            started_unix_ms: 1,
            gpu: Some("0".into()),
            process: ProcessId::of(pid).unwrap(),
        }
    }

    #[test]
    fn records_are_found_in_their_own_job_directories_only() {
        let work = tempfile::tempdir().unwrap();
        let own = work.path().join("jobs/j1/a2");
        let wrong = work.path().join("jobs/j1/a3");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::create_dir_all(&wrong).unwrap();
        let mine = record(std::process::id() as i32);
        mine.write(&own).unwrap();
        mine.write(&wrong).unwrap();
        let found = find_all(work.path());
        assert_eq!(found, vec![(own.clone(), mine)]);
        AttemptRecord::remove(&own);
        AttemptRecord::remove(&own);
        assert!(find_all(work.path()).is_empty());
    }

    #[test]
    fn a_process_is_told_from_one_that_reuses_its_pid() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert_eq!(me.state(), ProcessState::Running);
        let earlier = ProcessId {
            start_ticks: me.start_ticks.wrapping_sub(1),
            ..me
        };
        assert_eq!(earlier.state(), ProcessState::Reused);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let process = ProcessId::of(pid);
        child.wait().unwrap();
        if let Some(process) = process {
            assert_eq!(process.state(), ProcessState::Ended);
        }
    }
}
