//! The few lines of POSIX `sh` that stand between the worker and a command job, so
//! that the job can outlive its worker and be taken over by the next one.
//!
//! A command job must survive its worker's death (kill -9, a crash) for a worker
//! restarted on the same work dir to carry the attempt on. Three things make that
//! work:
//!
//! - **Nothing ties the job to the worker's life.** The wrapper leads its own process
//!   group (Ctrl-C in the worker's terminal does not reach it, and the worker's death
//!   sends it nothing); its stdout and stderr are files in the job directory, not
//!   pipes, so it never dies of SIGPIPE when its reader is gone. The worker reads
//!   `stdout.log` as it grows (`stdout_tail.rs`), and the next worker reads on from
//!   where the spool says the last one got to.
//! - **How it ended is kept.** When the job ends, the wrapper writes its exit status
//!   (`$?`: the code, or 128 + the signal) to [`EXIT_FILE`] before it exits itself. A
//!   worker that was down when the job ended reads it there. (One write of a few
//!   bytes: a reader sees the file empty or whole, and an empty one counts as not
//!   written yet.)
//! - **An orphan does not run on.** A job whose worker is gone and not replaced must
//!   not keep running beside the attempt the coordinator requeues. The worker writes
//!   [`HELD_FILE`] twice a second while it holds the attempt; a watchdog beside the
//!   job stops the group (SIGTERM, then SIGKILL once the job has ended or 5 s have
//!   passed, as the worker itself stops a job) once the file has not changed for the
//!   grace it was given: the coordinator's lease, after which the attempt is requeued
//!   anyway.
//!
//! The wrapper traps the signals a job is stopped or preempted with, so that it waits
//! for the job (which gets them too: they go to the group) and records how it ended;
//! a trap does not pass to the job, whose signals are as if the worker had started it.
//! When the job ends, the wrapper stops the watchdog (SIGALRM) and waits for it, and
//! the watchdog waits for its own `sleep`: nothing is left behind for an init that
//! does not reap orphans (a container whose first process is the worker) to collect.
//! A status of 129 to 192 is read as death by signal: a job that exits with such a
//! code on purpose is reported as killed by that signal.

use crate::command::RunEnd;
use std::path::Path;

/// The job's exit status, written by the wrapper when the job ends.
pub const EXIT_FILE: &str = ".expcluster-exit";
/// Rewritten every second by the worker that holds the attempt.
pub const HELD_FILE: &str = ".expcluster-held";

/// `sh -c WRAPPER expcluster-job GRACE_SECONDS PROGRAM ARGS...`, run in the job
/// directory.
pub const WRAPPER: &str = r#"grace=$1
shift
trap : HUP INT TERM USR1 USR2
(
  trap '' HUP INT TERM USR1 USR2
  nap=
  trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null && wait "$nap"; exit 0' ALRM
  last=
  same=0
  while [ ! -e .expcluster-exit ]; do
    sleep 1 &
    nap=$!
    wait "$nap"
    now=
    { read -r now < .expcluster-held; } 2>/dev/null
    if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; last=$now; fi
    if [ "$same" -ge "$grace" ]; then
      trap '' ALRM
      echo "expcluster: no worker has held this attempt for ${grace}s: stopping it" >&2
      kill -TERM 0
      waited=0
      while [ ! -e .expcluster-exit ] && [ "$waited" -lt 5 ]; do
        sleep 1
        waited=$((waited + 1))
      done
      kill -KILL 0
    fi
  done
) </dev/null &
watchdog=$!
"$@"
code=$?
printf '%s\n' "$code" > .expcluster-exit
kill -ALRM "$watchdog" 2>/dev/null
{ wait "$watchdog"; } 2>/dev/null
exit "$code"
"#;

/// The arguments that run `argv` under the wrapper with a watchdog of `grace_s`
/// seconds (at least 1).
pub fn wrapped_argv(argv: &[String], grace_s: u64) -> Vec<String> {
    let mut wrapped = vec![
        "-c".to_owned(),
        WRAPPER.to_owned(),
        "expcluster-job".to_owned(),
        grace_s.max(1).to_string(),
    ];
    wrapped.extend(argv.iter().cloned());
    wrapped
}

/// How the job in `dir` ended, if the wrapper has recorded it.
pub fn recorded_end(dir: &Path) -> Option<RunEnd> {
    let text = std::fs::read_to_string(dir.join(EXIT_FILE)).ok()?;
    let status: i32 = text.trim().parse().ok()?;
    Some(end_of_status(status))
}

/// A shell's `$?` as a run end: 129 to 192 is death by signal `status - 128`.
pub fn end_of_status(status: i32) -> RunEnd {
    match status {
        129..=192 => RunEnd::Signalled {
            signal: status - 128,
        },
        code => RunEnd::Exited { code },
    }
}

/// Marks the attempt in `dir` as held now (the watchdog's proof of life).
pub fn touch_held(dir: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    if let Err(err) = std::fs::write(dir.join(HELD_FILE), format!("{now}\n")) {
        tracing::warn!(dir = %dir.display(), %err, "cannot mark the attempt as held; its watchdog may stop it");
    }
}

/// Rewrites [`HELD_FILE`] every second until dropped.
pub struct Leash {
    task: tokio::task::JoinHandle<()>,
}

impl Leash {
    pub fn start(dir: &Path) -> Self {
        touch_held(dir);
        let dir = dir.to_path_buf();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                ticker.tick().await;
                touch_held(&dir);
            }
        });
        Self { task }
    }
}

impl Drop for Leash {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Runs `script` under the wrapper; returns how the wrapper ended and its process
    /// group's id, once it has been waited for.
    fn run(dir: &Path, grace: u64, script: &str) -> (std::process::ExitStatus, u32) {
        use std::os::unix::process::CommandExt;
        let argv = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        // Its own group, as the worker runs it: the watchdog signals the whole group.
        let mut wrapper = Command::new("sh")
            .args(wrapped_argv(&argv, grace))
            .current_dir(dir)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let group = wrapper.id();
        (wrapper.wait().unwrap(), group)
    }

    /// The `/proc/<pid>/stat` lines of the processes in process group `group`.
    fn members_of_group(group: u32) -> Vec<String> {
        let group = group.to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .filter(|stat| {
                let after_name = &stat[stat.rfind(')').unwrap_or(0) + 1..];
                after_name.split_whitespace().nth(2) == Some(group.as_str())
            })
            .collect()
    }

    #[test]
    fn the_exit_status_is_recorded_and_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        touch_held(dir.path());
        let (status, group) = run(dir.path(), 30, "echo out; exit 3");
        assert_eq!(status.code(), Some(3));
        // The wrapper waits for its watchdog before it exits, so this holds at once.
        let left = members_of_group(group);
        assert!(
            left.is_empty(),
            "nothing left behind, not even a zombie: {left:?}"
        );
        assert_eq!(recorded_end(dir.path()), Some(RunEnd::Exited { code: 3 }));
        let (status, group) = run(dir.path(), 30, "kill -KILL $$");
        assert_eq!(status.code(), Some(137));
        let left = members_of_group(group);
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(
            recorded_end(dir.path()),
            Some(RunEnd::Signalled { signal: 9 })
        );
    }

    #[test]
    fn a_job_nobody_holds_is_stopped_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        // Never marked as held: the watchdog stops it after about 2 s.
        let (_, group) = run(dir.path(), 2, "sleep 60");
        let took = started.elapsed();
        // The job sleeps 60 s: stopping it well before that is the watchdog's doing
        // (the bound is loose because a loaded machine delays the 1 s naps).
        assert!(took < Duration::from_secs(30), "stopped after {took:?}");
        assert!(
            took >= Duration::from_secs(2),
            "not before the grace: {took:?}"
        );
        // The watchdog's `kill -KILL 0` ends the wrapper and itself in one call, but
        // each process dies when the kernel next runs it: the wrapper can be reaped
        // here while the watchdog is still on its way out. What must hold is that
        // they all die, leaving zombies at most (no worker is there to reap them).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = members_of_group(group);
            if left.iter().all(|stat| stat.contains(") Z ")) {
                break;
            }
            assert!(Instant::now() < deadline, "nothing runs on: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            recorded_end(dir.path()),
            Some(RunEnd::Signalled { signal: 15 }),
            "SIGTERM first, and the end is on record"
        );
    }

    #[test]
    fn statuses_above_128_are_signals() {
        assert_eq!(end_of_status(0), RunEnd::Exited { code: 0 });
        assert_eq!(end_of_status(128), RunEnd::Exited { code: 128 });
        assert_eq!(end_of_status(143), RunEnd::Signalled { signal: 15 });
        assert_eq!(end_of_status(255), RunEnd::Exited { code: 255 });
    }
}
