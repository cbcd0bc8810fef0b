//! `expcluster status` and `expcluster workers`.

use super::CoordinatorArgs;
use crate::output::{jobs_table, render};
use anyhow::Context;
use clap::Args;
use expcluster_proto::v1;
use expcluster_coordinator::auth::Role;
use expcluster_worker::client::{channel, client_client};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// The stage to show.
    #[arg(long)]
    pub stage: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    #[arg(long)]
    pub json: bool,
}

/// Turns a gRPC failure into an error that says what to do.
pub fn explain(status: tonic::Status, address: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the coordinator at {address} ({}): start it with `expcluster coordinator`, or check --coordinator / EXPCLUSTER_COORDINATOR",
            status.message()
        ),
        _ => anyhow::anyhow!("{}", status.message()),
    }
}

pub fn require_address(args: &CoordinatorArgs) -> anyhow::Result<String> {
    args.coordinator
        .clone()
        .context("no coordinator given: pass --coordinator host:port or set EXPCLUSTER_COORDINATOR")
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let address = require_address(&args.coordinator)?;
    let security = args.connect.security(Role::Client, crate::workspace_arg::resolve(None, None).ok().as_deref())?;
    let mut client = client_client(channel(&address, &security)?, &security);
    let status = client
        .stage_status(v1::StageStatusRequest { stage: args.stage.clone() })
        .await
        .map_err(|status| explain(status, &address))?
        .into_inner();
    if args.json {
        let jobs: Vec<serde_json::Value> = status
            .jobs
            .iter()
            .map(|job| {
                serde_json::json!({
                    "job_id": job.job_id, "method": job.method, "seed": job.seed,
                    "state": crate::output::state_name(job.state), "attempt": job.attempt,
                    "metrics": job.final_metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    "error": job.error,
                })
            })
            .collect();
        let value = serde_json::json!({"stage": status.stage, "finished": status.finished, "idea_version": status.idea_version, "jobs": jobs, "outputs": status.outputs});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("stage {} ({}), idea v{}", status.stage, if status.finished { "finished" } else { "running" }, status.idea_version);
        print!("{}", jobs_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let address = require_address(&args.coordinator)?;
    let security = args.connect.security(Role::Client, crate::workspace_arg::resolve(None, None).ok().as_deref())?;
    let mut client = client_client(channel(&address, &security)?, &security);
    let workers = client
        .list_workers(v1::ListWorkersRequest {})
        .await
        .map_err(|status| explain(status, &address))?
        .into_inner()
        .workers;
    if args.json {
        let value: Vec<serde_json::Value> = workers
            .iter()
            .map(|w| serde_json::json!({"worker_id": w.worker_id, "hostname": w.hostname, "slots": w.slots, "busy": w.busy, "last_seen_s": w.last_seen_s}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec!["worker".to_owned(), "host".into(), "slots".into(), "busy".into(), "last seen".into()]];
    for w in workers {
        rows.push(vec![w.worker_id, w.hostname, w.slots.to_string(), w.busy.to_string(), format!("{:.1}s ago", w.last_seen_s)]);
    }
    print!("{}", render(&rows));
    Ok(ExitCode::SUCCESS)
}
