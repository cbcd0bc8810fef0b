//! Command jobs: a child process in the job's own directory (DESIGN §3).
//!
//! The child gets the EXP_* environment; every stdout line `NAME: VALUE` is streamed
//! as a metric point while it runs; stdout and stderr are kept as logs, and the tail
//! of stderr goes into the completion. The child leads its own process group so a
//! timeout, a cancel or a preemption stops everything it started.

use crate::job_dir::JobDir;
use crate::reporter::MetricSender;
use expcluster_core::metric_line::parse_metric_line;
use expcluster_proto::v1;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
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

/// Runs the command to its end (or until stopped) and returns how it ended, plus the
/// tail of its stderr.
pub async fn run_command(
    command: &v1::CommandJob,
    env: Vec<(String, String)>,
    dir: &JobDir,
    metrics: MetricSender,
    mut stop: watch::Receiver<Option<StopReason>>,
    timeout: Duration,
) -> std::io::Result<(RunEnd, String)> {
    let (program, args) = command
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(&dir.root)
        .envs(command.env.iter())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot start {program:?}: {err}"))
        })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
    let stdout_task = tokio::spawn(pump_stdout(
        stdout,
        dir.root.join("stdout.log"),
        dir.root.join("worker.log"),
        metrics,
    ));
    let stderr_task = tokio::spawn(pump_stderr(stderr, dir.root.join("stderr.log")));

    let end = tokio::select! {
        status = child.wait() => {
            let status = status?;
            match status.code() {
                Some(code) => RunEnd::Exited { code },
                None => {
                    let signal = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
                    preemption_or(signal, &mut stop).await
                }
            }
        }
        () = tokio::time::sleep(timeout) => {
            stop_group(pid, &mut child).await;
            RunEnd::TimedOut
        }
        reason = wait_for_stop(&mut stop) => {
            stop_group(pid, &mut child).await;
            RunEnd::Stopped(reason)
        }
    };
    // Once the child is gone its pipes close; a grandchild holding them open is killed
    // with the group above, so these joins end.
    let _ = stdout_task.await;
    let tail = stderr_task.await.unwrap_or_default();
    Ok((end, tail))
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
async fn stop_group(pid: Option<Pid>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid {
        let _ = killpg(pid, Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = killpg(pid, Signal::SIGKILL);
        } else {
            // The leader exited; children it left behind still get killed.
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    let _ = child.wait().await;
}

async fn pump_stdout(
    stdout: impl AsyncRead + Unpin,
    log_path: std::path::PathBuf,
    notes_path: std::path::PathBuf,
    metrics: MetricSender,
) {
    let mut log = std::fs::File::create(log_path).ok();
    let mut notes = std::fs::File::create(notes_path).ok();
    let mut lines = BufReader::new(stdout).lines();
    let mut number = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        number += 1;
        if let Some(file) = log.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        match parse_metric_line(&line) {
            Some(metric) => metrics.send(metric.name, metric.value),
            None if line.trim().is_empty() => {}
            None => {
                if let Some(file) = notes.as_mut() {
                    let _ = writeln!(
                        file,
                        "warning: stdout line {number} is not `NAME: VALUE`, ignored: {line}"
                    );
                }
            }
        }
    }
}

async fn pump_stderr(stderr: impl AsyncRead + Unpin, log_path: std::path::PathBuf) -> String {
    let mut log = std::fs::File::create(log_path).ok();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(file) = log.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into_iter().collect::<Vec<_>>().join("\n")
}
