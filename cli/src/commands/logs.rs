//! `expcluster logs <job>`: a job's stdout, stderr or worker log.
//!
//! Workers upload a job's logs when an attempt ends (`logs/<job>.a<N>.<stream>.log`),
//! so `--follow` waits for each attempt's log, prints it, and moves on to the next
//! attempt if the job is retried, until the job has ended; while an attempt runs it
//! shows the stderr tail the coordinator has. Without a coordinator the files are
//! read from the workspace.

use super::{CoordinatorArgs, WorkspaceArgs};
use crate::commands::status::{connect, explain};
use anyhow::bail;
use clap::Args;
use expcluster_proto::v1;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The job id (see `expcluster status --stage <stage>`).
    pub job: String,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// stdout, stderr, or worker (the worker's own log of the attempt).
    #[arg(long, default_value = "stdout", value_parser = ["stdout", "stderr", "worker"])]
    pub stream: String,
    /// The attempt (default: the latest).
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Wait for the job's attempts to end and print their logs as they land.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print {job_id, attempt, stream, state, content} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    if args.coordinator.coordinator.is_none() {
        return local(&args);
    }
    let (mut client, address) = connect(&args.coordinator, &args.connect)?;
    let mut attempt = args.attempt.unwrap_or(0);
    let mut offset = 0u64;
    let mut said_waiting = false;
    loop {
        let request = v1::JobLogRequest {
            job_id: args.job.clone(),
            attempt,
            stream: args.stream.clone(),
            offset,
        };
        let piece = client
            .job_log(request)
            .await
            .map_err(|status| explain(status, &address))?
            .into_inner();
        let state = crate::output::state_name(piece.job_state);
        if args.json && !args.follow {
            let value = serde_json::json!({"job_id": args.job, "attempt": piece.attempt, "stream": args.stream, "exists": piece.exists, "state": state, "content": String::from_utf8_lossy(&piece.content)});
            println!("{value}");
            return Ok(ExitCode::SUCCESS);
        }
        std::io::stdout().write_all(&piece.content)?;
        std::io::stdout().flush()?;
        offset = piece.next_offset;
        let ended = matches!(state, "succeeded" | "failed" | "cancelled");
        if !args.follow {
            if !piece.exists {
                eprintln!("job {} attempt {} ({state}) has no stored {} log yet: logs are uploaded when an attempt ends; `--follow` waits for it", args.job, piece.attempt, args.stream);
                print_tail(&piece.stderr_tail);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if piece.exists && piece.content.is_empty() {
            // This attempt's log is complete: move on if the job was retried.
            let latest = client
                .job_log(v1::JobLogRequest {
                    job_id: args.job.clone(),
                    attempt: 0,
                    stream: args.stream.clone(),
                    offset: 0,
                })
                .await
                .map_err(|status| explain(status, &address))?
                .into_inner();
            if latest.attempt > piece.attempt && args.attempt.is_none() {
                eprintln!("== attempt {} of job {}", latest.attempt, args.job);
                attempt = latest.attempt;
                offset = 0;
                continue;
            }
            if ended {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !piece.exists && !said_waiting {
            eprintln!(
                "waiting for attempt {} of {} ({state}) to end; its log is uploaded then",
                piece.attempt, args.job
            );
            said_waiting = true;
        }
        if !piece.exists && ended && piece.attempt == 0 {
            bail!("job {} ended without running (it was {state})", args.job);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_tail(tail: &str) {
    if !tail.trim().is_empty() {
        eprintln!("last stderr lines:");
        for line in tail.lines() {
            eprintln!("   | {line}");
        }
    }
}

/// Reads `logs/<job>.a<N>.<stream>.log` from the workspace (the latest N by default).
fn local(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let root = crate::workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )
    .map_err(|err| err.context("logs without --coordinator read the workspace's logs/ folder"))?;
    let attempt = match args.attempt {
        Some(attempt) => attempt,
        None => latest_attempt(&root.join("logs"), &args.job, &args.stream).ok_or_else(|| {
            anyhow::anyhow!(
                "no {} log of job {} under {}: check the job id with `expcluster status --stage <stage> --coordinator <addr>`, or pass --coordinator to ask a running coordinator",
                args.stream,
                args.job,
                root.join("logs").display()
            )
        })?,
    };
    let path = root
        .join("logs")
        .join(format!("{}.a{attempt}.{}.log", args.job, args.stream));
    let content = std::fs::read(&path)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display()))?;
    if args.json {
        let value = serde_json::json!({"job_id": args.job, "attempt": attempt, "stream": args.stream, "exists": true, "content": String::from_utf8_lossy(&content)});
        println!("{value}");
    } else {
        std::io::stdout().write_all(&content)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn latest_attempt(logs: &Path, job: &str, stream: &str) -> Option<u32> {
    let prefix = format!("{job}.a");
    let suffix = format!(".{stream}.log");
    std::fs::read_dir(logs)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)?
                .strip_suffix(&suffix)?
                .parse::<u32>()
                .ok()
        })
        .max()
}
