//! `expcluster status` and `expcluster workers`, and the connection and error
//! helpers every command that talks to a coordinator shares.

use super::CoordinatorArgs;
use crate::output::{
    jobs_table, stage_overview_json, stage_status_json, stages_table, worker_json, workers_table,
};
use anyhow::Context;
use clap::Args;
use expcluster_coordinator::service::auth::Role;
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client, ClientClient};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// The stage whose jobs to show; without it, every stage and the workers.
    #[arg(long)]
    pub stage: Option<String>,
    /// Print JSON for scripts and agents.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Print JSON for scripts and agents.
    #[arg(long)]
    pub json: bool,
}

/// Turns a gRPC failure into an error that says what to do.
pub fn explain(status: tonic::Status, address: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable
            if status
                .message()
                .starts_with(expcluster_coordinator::error::CANNOT_WRITE_WORKSPACE) =>
        {
            anyhow::anyhow!(
                "the coordinator at {address} is running but {}",
                status.message()
            )
        }
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the coordinator at {address} ({}): start it with `expcluster coordinator --workspace experiments/<idea>`, or check --coordinator / EXPCLUSTER_COORDINATOR",
            status.message()
        ),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            anyhow::anyhow!("the coordinator at {address} refused the call: {}", status.message())
        }
        tonic::Code::Unimplemented => anyhow::anyhow!(
            "the coordinator at {address} does not know this call ({}): upgrade it to the same expcluster version as this CLI",
            status.message()
        ),
        _ => anyhow::anyhow!("{}", status.message()),
    }
}

pub fn require_address(args: &CoordinatorArgs) -> anyhow::Result<String> {
    args.coordinator
        .clone()
        .context("no coordinator given: pass --coordinator host:port or set EXPCLUSTER_COORDINATOR (after `expcluster submit` ends, its embedded coordinator is gone: start one with `expcluster coordinator`)")
}

/// A client of the coordinator named by the flags, with its token and TLS.
pub fn connect(
    coordinator: &CoordinatorArgs,
    connect: &crate::connect::ConnectArgs,
) -> anyhow::Result<(ClientClient, String)> {
    let address = require_address(coordinator)?;
    let security = connect.security(
        Role::Client,
        crate::workspace_arg::resolve(None, None).ok().as_deref(),
    )?;
    let client = client_client(channel(&address, &security)?, &security);
    Ok((client, address))
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (mut client, address) = connect(&args.coordinator, &args.connect)?;
    if let Some(stage) = &args.stage {
        let status = client
            .stage_status(v1::StageStatusRequest {
                stage: stage.clone(),
            })
            .await
            .map_err(|status| explain(status, &address))?
            .into_inner();
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&stage_status_json(&status))?
            );
        } else {
            println!(
                "stage {} ({}), idea v{}",
                status.stage,
                if status.finished {
                    "finished"
                } else {
                    "running"
                },
                status.idea_version
            );
            print!("{}", jobs_table(&status));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let overview = overview(&mut client, &address).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&overview.to_json())?);
    } else {
        print!("{}", overview.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every stage and every worker.
pub struct Overview {
    pub stages: v1::ListStagesResponse,
    pub workers: Vec<v1::WorkerInfo>,
}

impl Overview {
    pub fn to_json(&self) -> serde_json::Value {
        let slots: u32 = self.workers.iter().map(|w| w.slots).sum();
        let busy: u32 = self.workers.iter().map(|w| w.busy).sum();
        serde_json::json!({
            "idea": self.stages.idea, "idea_version": self.stages.idea_version,
            "stages": self.stages.stages.iter().map(stage_overview_json).collect::<Vec<_>>(),
            "workers": self.workers.iter().map(worker_json).collect::<Vec<_>>(),
            "slots": {"total": slots, "busy": busy},
        })
    }

    pub fn to_text(&self) -> String {
        let slots: u32 = self.workers.iter().map(|w| w.slots).sum();
        let busy: u32 = self.workers.iter().map(|w| w.busy).sum();
        let mut text = format!(
            "idea {} (v{})\n\n",
            self.stages.idea, self.stages.idea_version
        );
        text.push_str(&stages_table(&self.stages.stages));
        text.push_str(&format!(
            "\n{} worker(s), {busy} of {slots} slot(s) busy\n",
            self.workers.len()
        ));
        if !self.workers.is_empty() {
            text.push_str(&workers_table(&self.workers));
        }
        text
    }
}

pub async fn overview(client: &mut ClientClient, address: &str) -> anyhow::Result<Overview> {
    let stages = client
        .list_stages(v1::ListStagesRequest {})
        .await
        .map_err(|status| explain(status, address))?
        .into_inner();
    let workers = client
        .list_workers(v1::ListWorkersRequest {})
        .await
        .map_err(|status| explain(status, address))?
        .into_inner()
        .workers;
    Ok(Overview { stages, workers })
}

pub async fn run_workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let (mut client, address) = connect(&args.coordinator, &args.connect)?;
    let workers = client
        .list_workers(v1::ListWorkersRequest {})
        .await
        .map_err(|status| explain(status, &address))?
        .into_inner()
        .workers;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&workers.iter().map(worker_json).collect::<Vec<_>>())?
        );
    } else {
        print!("{}", workers_table(&workers));
    }
    Ok(ExitCode::SUCCESS)
}
