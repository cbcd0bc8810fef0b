//! `expcluster cancel`.

use super::CoordinatorArgs;
use crate::commands::status::{explain, require_address};
use clap::Args;
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client, ClientClient};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Cancel the queued and running jobs of this stage.
    #[arg(long, conflicts_with = "job")]
    pub stage: Option<String>,
    /// Cancel one job.
    #[arg(long)]
    pub job: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let address = require_address(&args.coordinator)?;
    let security = args.connect.security(
        expcluster_coordinator::service::auth::Role::Client,
        crate::workspace_arg::resolve(None, None).ok().as_deref(),
    )?;
    let mut client = client_client(channel(&address, &security)?, &security);
    let cancelled = cancel(
        &mut client,
        &address,
        args.stage.as_deref(),
        args.job.as_deref(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::json!({"cancelled": cancelled}));
    } else {
        println!("cancelled {cancelled} job(s)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels the queued and running jobs of `stage`, or one job; returns how many.
pub async fn cancel(
    client: &mut ClientClient,
    address: &str,
    stage: Option<&str>,
    job: Option<&str>,
) -> anyhow::Result<u32> {
    if stage.is_none() && job.is_none() {
        anyhow::bail!("say what to cancel: --stage <stage> or --job <job id>");
    }
    let response = client
        .cancel(v1::CancelRequest {
            stage: stage.unwrap_or_default().to_owned(),
            job_id: job.unwrap_or_default().to_owned(),
        })
        .await
        .map_err(|status| explain(status, address))?
        .into_inner();
    Ok(response.cancelled)
}
