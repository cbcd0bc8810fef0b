//! `expcluster logs <job> --follow`: a job's log as it is written, until the job ends.
//!
//! Workers send a running attempt's new output about every second, and the whole log
//! when the attempt ends; the coordinator serves either from a byte offset (`JobLog`).
//! The follower prints what is there, then polls from where it stopped. When the
//! attempt it follows has ended and the job runs again (a retry or a requeue), it says
//! so in a line and follows the next attempt from its start. It stops when the job
//! reaches a final state: exit status 0 when the job succeeded, 1 otherwise, with a
//! last line on stderr that says how it ended. Ctrl-C stops following (exit 130); the
//! job keeps running.
//!
//! Log bytes go to stdout untouched; every line about the following goes to stderr, so
//! `logs --follow > out.txt` captures exactly the job's output. With `--json`, each
//! piece and each note is one JSON object per line on stdout.

use super::logs::LogsArgs;
use crate::commands::status::explain;
use crate::output::state_name;
use expcluster_proto::v1;
use expcluster_worker::client::ClientClient;
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How often a caught-up follower asks again.
const POLL: Duration = Duration::from_millis(500);

/// Follows the job until it ends or Ctrl-C.
pub async fn follow(
    mut client: ClientClient,
    address: &str,
    args: &LogsArgs,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        ended = follow_to_end(&mut client, address, args) => ended,
        _ = tokio::signal::ctrl_c() => {
            note(args, json!({"event": "interrupted"}), &format!(
                "stopped following {} (the job keeps running; `expcluster logs {} --follow` picks it up again)",
                args.job, args.job
            ));
            Ok(ExitCode::from(130))
        }
    }
}

async fn follow_to_end(
    client: &mut ClientClient,
    address: &str,
    args: &LogsArgs,
) -> anyhow::Result<ExitCode> {
    let mut attempt = args.attempt.unwrap_or(0);
    let mut offset = 0u64;
    let mut said_waiting = false;
    let mut said_unreachable = false;
    loop {
        let request = v1::JobLogRequest {
            job_id: args.job.clone(),
            attempt,
            stream: args.stream.clone(),
            offset,
        };
        let piece = match client.job_log(request).await {
            Ok(piece) => piece.into_inner(),
            // A coordinator restart should not end a follow: wait for it.
            Err(status) if status.code() == tonic::Code::Unavailable => {
                if !said_unreachable {
                    eprintln!(
                        "{}; retrying until it answers (Ctrl-C stops)",
                        explain(status, address)
                    );
                    said_unreachable = true;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(status) => return Err(explain(status, address)),
        };
        said_unreachable = false;
        // Once the job has run, follow a fixed attempt so a requeue is noticed.
        if attempt == 0 && piece.attempt > 0 {
            attempt = piece.attempt;
        }
        if !piece.content.is_empty() {
            print_content(args, piece.attempt, &piece.content)?;
            offset = piece.next_offset;
            // More may be waiting right away (answers are capped at 1 MiB).
            continue;
        }
        let state = state_name(piece.job_state);
        let ended = matches!(state, "succeeded" | "failed" | "cancelled");
        if !piece.attempt_running {
            if args.attempt.is_none() && attempt > 0 && piece.latest_attempt > attempt {
                note(
                    args,
                    json!({"event": "next_attempt", "ended": attempt, "attempt": piece.latest_attempt}),
                    &format!(
                        "== attempt {attempt} of {} ended; the job runs again: following attempt {}",
                        args.job, piece.latest_attempt
                    ),
                );
                attempt = piece.latest_attempt;
                offset = 0;
                continue;
            }
            if ended {
                return Ok(finish(args, &piece, state));
            }
            if args.attempt.is_some() && piece.latest_attempt > attempt {
                note(
                    args,
                    json!({"event": "attempt_ended", "attempt": attempt, "latest_attempt": piece.latest_attempt}),
                    &format!(
                        "attempt {attempt} of {} ended; the job runs again as attempt {} (drop --attempt to follow it)",
                        args.job, piece.latest_attempt
                    ),
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        if !said_waiting && !piece.exists {
            let what = if piece.attempt == 0 {
                format!("job {} is {state}: waiting for it to start", args.job)
            } else {
                format!(
                    "attempt {} of {} is {state}: waiting for its {} output",
                    piece.attempt, args.job, args.stream
                )
            };
            note(
                args,
                json!({"event": "waiting", "state": state, "attempt": piece.attempt}),
                &what,
            );
            said_waiting = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The last line, and the exit status: 0 only for a job that succeeded.
fn finish(args: &LogsArgs, piece: &v1::JobLogResponse, state: &str) -> ExitCode {
    let value = json!({
        "event": "ended",
        "job_id": args.job,
        "state": state,
        "attempt": piece.attempt,
        "error": piece.error,
    });
    if state == "succeeded" {
        note(
            args,
            value,
            &format!("== job {} succeeded (attempt {})", args.job, piece.attempt),
        );
        return ExitCode::SUCCESS;
    }
    if !args.json && !piece.stderr_tail.trim().is_empty() && args.stream != "stderr" {
        eprintln!("last stderr lines:");
        for line in piece.stderr_tail.lines() {
            eprintln!("   | {line}");
        }
    }
    let how = if piece.attempt == 0 {
        format!("== job {} ended without running: it was {state}", args.job)
    } else if piece.error.is_empty() {
        format!("== job {} {state} (attempt {})", args.job, piece.attempt)
    } else {
        format!(
            "== job {} {state} (attempt {}): {}",
            args.job, piece.attempt, piece.error
        )
    };
    note(args, value, &how);
    ExitCode::FAILURE
}

fn print_content(args: &LogsArgs, attempt: u32, content: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "event": "log",
            "job_id": args.job,
            "attempt": attempt,
            "stream": args.stream,
            "content": String::from_utf8_lossy(content),
        });
        writeln!(out, "{value}")?;
    } else {
        out.write_all(content)?;
    }
    out.flush()
}

/// A line about the following: stderr for people, a JSON line on stdout with --json.
fn note(args: &LogsArgs, value: serde_json::Value, text: &str) {
    if args.json {
        println!("{value}");
    } else {
        eprintln!("{text}");
    }
}
