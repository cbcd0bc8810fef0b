//! `expcluster logs <job>`: a job's stdout, stderr or worker log.
//!
//! Through a coordinator, it prints what the coordinator holds of the attempt's log:
//! the whole log once the attempt has ended, or its output so far while it runs
//! (workers send new output about every second). `--follow` keeps printing new output
//! until the job ends (see `logs_follow.rs`). Without a coordinator the files are read
//! from the workspace's `logs/` folder.

use super::{CoordinatorArgs, WorkspaceArgs};
use crate::commands::status::{connect, explain};
use anyhow::bail;
use clap::Args;
use expcluster_proto::v1;
use expcluster_worker::client::ClientClient;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

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
    /// Keep printing new output as the job writes it, across retries, until the job
    /// ends (exit status 0 only if it succeeded).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print {job_id, attempt, stream, state, content} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    if args.coordinator.coordinator.is_none() {
        if args.follow {
            bail!("--follow needs a running coordinator: pass --coordinator <host:port> (or set EXPCLUSTER_COORDINATOR)");
        }
        return local(&args);
    }
    let (mut client, address) = connect(&args.coordinator, &args.connect)?;
    if args.follow {
        return super::logs_follow::follow(client, &address, &args).await;
    }
    let read = fetch_log(
        &mut client,
        &address,
        &args.job,
        &args.stream,
        args.attempt.unwrap_or(0),
    )
    .await?;
    let state = read.state;
    if args.json {
        let value = serde_json::json!({"job_id": args.job, "attempt": read.attempt, "stream": args.stream, "exists": read.exists, "running": read.running, "state": state, "content": String::from_utf8_lossy(&read.content)});
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    std::io::stdout().write_all(&read.content)?;
    if !read.exists {
        eprintln!("job {} attempt {} ({state}) has no {} output stored yet; `--follow` prints it as it comes", args.job, read.attempt, args.stream);
        print_tail(&read.stderr_tail);
    } else if read.running {
        eprintln!("(attempt {} is still running: this is its output so far; `--follow` prints the rest as it comes)", read.attempt);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the coordinator holds of one attempt's log.
pub struct LogRead {
    /// The attempt read (the latest when 0 was asked).
    pub attempt: u32,
    /// False while nothing of the attempt's log is stored yet.
    pub exists: bool,
    /// The attempt is still running: this is its output so far.
    pub running: bool,
    /// The job's state (`queued`, `running`, `succeeded`, …).
    pub state: &'static str,
    pub content: Vec<u8>,
    /// The last stderr lines the coordinator keeps for the job.
    pub stderr_tail: String,
}

/// Reads all the coordinator holds of a job's `stream` log (`attempt` 0: the latest).
pub async fn fetch_log(
    client: &mut ClientClient,
    address: &str,
    job: &str,
    stream: &str,
    attempt: u32,
) -> anyhow::Result<LogRead> {
    // Answers are capped (1 MiB): read on to the end of what is stored.
    let mut content = Vec::new();
    let mut attempt = attempt;
    let piece = loop {
        let request = v1::JobLogRequest {
            job_id: job.to_owned(),
            attempt,
            stream: stream.to_owned(),
            offset: content.len() as u64,
        };
        let mut piece = client
            .job_log(request)
            .await
            .map_err(|status| explain(status, address))?
            .into_inner();
        if piece.content.is_empty() {
            break piece;
        }
        attempt = piece.attempt;
        content.append(&mut piece.content);
    };
    Ok(LogRead {
        attempt: piece.attempt,
        exists: piece.exists,
        running: piece.attempt_running,
        state: crate::output::state_name(piece.job_state),
        content,
        stderr_tail: piece.stderr_tail,
    })
}

fn print_tail(tail: &str) {
    if !tail.trim().is_empty() {
        eprintln!("last stderr lines:");
        for line in tail.lines() {
            eprintln!("   | {line}");
        }
    }
}

/// Reads `logs/<job>.a<N>.<stream>.log` from the workspace (the latest N by default),
/// or its live `.partial` log while the attempt runs.
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
    let mut path = root
        .join("logs")
        .join(format!("{}.a{attempt}.{}.log", args.job, args.stream));
    if !path.exists() {
        // A running attempt has only its live log so far.
        path.set_extension("log.partial");
    }
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
            let name = name.strip_suffix(".partial").unwrap_or(&name);
            name.strip_prefix(&prefix)?
                .strip_suffix(&suffix)?
                .parse::<u32>()
                .ok()
        })
        .max()
}
