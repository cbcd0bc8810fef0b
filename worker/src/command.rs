//! Command jobs: a child process in the job's own directory (DESIGN §3).
//!
//! The child gets the EXP_* environment; every stdout line `NAME: VALUE` is streamed
//! as a metric point while it runs; stdout and stderr are kept as logs, and the tail
//! of stderr goes into the completion. The child runs under a small `sh` wrapper
//! (`job_wrapper.rs`) that leads its own process group, so a timeout, a cancel or a
//! preemption stops everything it started, while the worker's own death does not: a
//! worker restarted on the same work dir carries the job on (`adopt.rs`).

use crate::attempt_record::{ProcessId, ProcessState};
use crate::job_dir::JobDir;
use crate::job_wrapper::{end_of_status, recorded_end, wrapped_argv, Leash};
use crate::reporter::MetricSender;
use crate::stdout_tail::StdoutTail;
use expcluster_proto::v1;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::watch;

/// Why the worker stops a job early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The coordinator cancelled it or superseded the attempt.
    Cancelled,
    /// The worker is draining (SIGTERM/SIGUSR2): requeue without spending the budget.
    Preempted,
}

/// How a run ended, before it is reported.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Exited {
        code: i32,
    },
    Signalled {
        signal: i32,
    },
    TimedOut,
    Stopped(StopReason),
    /// A data-parallel rank stopped because a peer of its gang was lost (the
    /// trainer's collectives say so; a command job's cannot, and exits).
    PeerLost,
    /// A job taken over from a previous worker whose processes are gone with no
    /// exit status recorded (killed from outside while no worker held it).
    Lost,
}

/// Grace between SIGTERM and SIGKILL when stopping a job.
const STOP_GRACE: Duration = Duration::from_secs(5);
const STDERR_TAIL_LINES: usize = 40;

/// The EXP_* environment of a job (torchrun-style variables come with gangs).
pub fn job_environment(
    spec: &v1::JobSpec,
    dir: &JobDir,
    gpu: Option<&str>,
) -> Vec<(String, String)> {
    vec![
        ("EXP_SEED".into(), spec.seed.to_string()),
        ("EXP_STAGE".into(), spec.stage.clone()),
        ("EXP_METHOD".into(), spec.method.clone()),
        ("EXP_CONFIG".into(), spec.config_json.clone()),
        ("EXP_SWEEP_POINT".into(), spec.sweep_point_json.clone()),
        ("EXP_OUTPUT_DIR".into(), dir.output.display().to_string()),
        ("EXP_JOB_ID".into(), spec.job_id.clone()),
        ("EXP_ATTEMPT".into(), spec.attempt.to_string()),
        ("EXP_WORKSPACE".into(), spec.workspace_dir.clone()),
        ("EXP_IDEA_VERSION".into(), spec.idea_version.to_string()),
        (
            "EXP_CHECKPOINT_DIR".into(),
            crate::runner::checkpoint_dir(&dir.work_dir, spec)
                .display()
                .to_string(),
        ),
        ("CUDA_VISIBLE_DEVICES".into(), gpu.unwrap_or("").to_owned()),
        // Python buffers a piped stdout; metrics must stream as they are printed.
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ]
}

/// What starting a command job needs beyond its directory.
pub struct Launch<'a> {
    pub command: &'a v1::CommandJob,
    /// The EXP_* (and torchrun) environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// How long the job may run on with no worker holding it (`job_wrapper.rs`).
    pub orphan_grace: Duration,
}

/// Runs the command to its end (or until stopped) and returns how it ended, plus the
/// tail of its stderr. `started` is told the job's process once it runs (to record
/// it for a worker restarted here).
pub async fn run_command(
    launch: Launch<'_>,
    dir: &JobDir,
    metrics: MetricSender,
    mut stop: watch::Receiver<Option<StopReason>>,
    started: impl FnOnce(i32),
) -> std::io::Result<(RunEnd, String)> {
    let Launch {
        command,
        env,
        timeout,
        orphan_grace,
    } = launch;
    let program = command
        .argv
        .first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let path = command
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    if !program_exists(program, &path, &dir.root) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("cannot start {program:?}: no such program (PATH={path})"),
        ));
    }
    let stdout = std::fs::File::create(dir.root.join("stdout.log"))?;
    let stderr = std::fs::File::create(dir.root.join("stderr.log"))?;
    std::fs::File::create(dir.root.join("worker.log"))?;
    let _leash = Leash::start(&dir.root);
    let child = Command::new("/bin/sh")
        .args(wrapped_argv(&command.argv, orphan_grace.as_secs()))
        .current_dir(&dir.root)
        .envs(command.env.iter())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own group: stopped as a whole, and out of reach of what stops the worker.
        .process_group(0)
        .spawn()
        .map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot start {program:?}: {err}"))
        })?;
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return Err(std::io::Error::other("the job's process has no pid"));
    };
    started(pid);
    let mut process = JobProcess::Spawned {
        child,
        group: Pid::from_raw(pid),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    Ok(supervise(&mut process, &dir.root, 0, metrics, &mut stop, deadline).await)
}

/// Carries on a job a previous worker on this work dir started (`adopt.rs`): reads its
/// stdout on from `stdout_from`, and waits for its end until `deadline`.
pub async fn carry_on_command(
    process: ProcessId,
    dir: &Path,
    stdout_from: u64,
    metrics: MetricSender,
    mut stop: watch::Receiver<Option<StopReason>>,
    deadline: tokio::time::Instant,
) -> (RunEnd, String) {
    let _leash = Leash::start(dir);
    let mut process = JobProcess::Adopted(process);
    supervise(&mut process, dir, stdout_from, metrics, &mut stop, deadline).await
}

/// Follows the job's output and waits for its end, its deadline or a stop.
async fn supervise(
    process: &mut JobProcess,
    dir: &Path,
    stdout_from: u64,
    metrics: MetricSender,
    stop: &mut watch::Receiver<Option<StopReason>>,
    deadline: tokio::time::Instant,
) -> (RunEnd, String) {
    let (finished_tx, finished_rx) = watch::channel(false);
    let tail = StdoutTail {
        stdout: dir.join("stdout.log"),
        from: stdout_from,
        notes: dir.join("worker.log"),
        metrics,
    };
    let stdout_task = tokio::spawn(tail.run(finished_rx));
    let end = tokio::select! {
        // The end first: a job a restarted worker finds ended (before its deadline,
        // while no worker was there) is not reported as timed out.
        biased;
        end = process.wait(dir) => match end {
            RunEnd::Signalled { signal } => preemption_or(signal, stop).await,
            end => end,
        },
        () = tokio::time::sleep_until(deadline) => {
            stop_group(process, dir).await;
            RunEnd::TimedOut
        }
        reason = wait_for_stop(stop) => {
            stop_group(process, dir).await;
            RunEnd::Stopped(reason)
        }
    };
    let _ = finished_tx.send(true);
    let _ = stdout_task.await;
    (end, stderr_tail(&dir.join("stderr.log")))
}

/// The job's process group leader (the wrapper): the worker's own child, or one taken
/// over from the previous worker on this work dir (which it cannot `wait` for, so it
/// watches for the exit file and the process).
enum JobProcess {
    Spawned {
        child: tokio::process::Child,
        group: Pid,
    },
    Adopted(ProcessId),
}

impl JobProcess {
    /// Waits for the wrapper to exit; how the job ended, as its exit file says.
    async fn wait(&mut self, dir: &Path) -> RunEnd {
        match self {
            JobProcess::Spawned { child, .. } => {
                let status = match child.wait().await {
                    Ok(status) => status,
                    Err(err) => {
                        tracing::error!(%err, "cannot wait for the job's process");
                        return RunEnd::Lost;
                    }
                };
                if let Some(end) = recorded_end(dir) {
                    return end;
                }
                // The wrapper itself was killed before it could record the end.
                match (
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ) {
                    (Some(code), _) => end_of_status(code),
                    (None, signal) => RunEnd::Signalled {
                        signal: signal.unwrap_or(0),
                    },
                }
            }
            JobProcess::Adopted(process) => loop {
                if let Some(end) = recorded_end(dir) {
                    return end;
                }
                if process.state() != ProcessState::Running {
                    // The exit file is written before the wrapper exits.
                    return recorded_end(dir).unwrap_or(RunEnd::Lost);
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }

    /// The process group to signal; `None` once its pid belongs to another process
    /// (the group is then empty: a pid still used as a group id is never reused).
    fn group(&self) -> Option<Pid> {
        match self {
            JobProcess::Spawned { group, .. } => Some(*group),
            JobProcess::Adopted(process) => {
                (process.state() != ProcessState::Reused).then(|| Pid::from_raw(process.pid))
            }
        }
    }
}

/// How often a taken-over job is looked at (its end is noticed within this).
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// Whether `program` can be found as `exec` would look for it.
fn program_exists(program: &str, path: &str, cwd: &Path) -> bool {
    if program.contains('/') {
        return cwd.join(program).exists();
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                cwd.to_path_buf()
            } else {
                cwd.join(dir)
            }
        })
        .any(|dir| dir.join(program).is_file())
}

/// Under Slurm the preemption signal reaches the job's processes as well as the
/// worker, and the job may die of it before the worker has begun draining. A job
/// killed by such a signal is therefore given a moment for the drain to show up: if it
/// does, the attempt was preempted (no failure budget spent), not failed.
async fn preemption_or(signal: i32, stop: &mut watch::Receiver<Option<StopReason>>) -> RunEnd {
    const DRAIN_SIGNALS: [Signal; 4] = [
        Signal::SIGTERM,
        Signal::SIGUSR2,
        Signal::SIGINT,
        Signal::SIGHUP,
    ];
    let is_drain_signal = DRAIN_SIGNALS.iter().any(|s| *s as i32 == signal);
    if is_drain_signal {
        if let Ok(StopReason::Preempted) =
            tokio::time::timeout(Duration::from_secs(2), wait_for_stop(stop)).await
        {
            return RunEnd::Stopped(StopReason::Preempted);
        }
    }
    RunEnd::Signalled { signal }
}

async fn wait_for_stop(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: nobody can stop this job any more.
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM to the whole group, then SIGKILL after the grace period.
async fn stop_group(process: &mut JobProcess, dir: &Path) {
    let Some(group) = process.group() else {
        return;
    };
    let _ = killpg(group, Signal::SIGTERM);
    // Once the leader exited, children it left behind still get killed.
    let _ = tokio::time::timeout(STOP_GRACE, process.wait(dir)).await;
    if let Some(group) = process.group() {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = process.wait(dir).await;
}

/// The last lines of the job's stderr (read from the end of its file).
fn stderr_tail(path: &Path) -> String {
    const READ_AT_MOST: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let start = length.saturating_sub(READ_AT_MOST);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be the end of a longer one.
        lines.remove(0);
    }
    let keep = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[keep..].join("\n")
}
