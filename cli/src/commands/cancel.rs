//! `expcluster cancel`.

use super::CoordinatorArgs;
use crate::commands::status::{explain, require_address};
use clap::Args;
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client};
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
    if args.stage.is_none() && args.job.is_none() {
        anyhow::bail!("say what to cancel: --stage <stage> or --job <job id>");
    }
    let security = args.connect.security(
        expcluster_coordinator::auth::Role::Client,
        crate::workspace_arg::resolve(None, None).ok().as_deref(),
    )?;
    let mut client = client_client(channel(&address, &security)?, &security);
    let response = client
        .cancel(v1::CancelRequest {
            stage: args.stage.unwrap_or_default(),
            job_id: args.job.unwrap_or_default(),
        })
        .await
        .map_err(|status| explain(status, &address))?
        .into_inner();
    if args.json {
        println!("{}", serde_json::json!({"cancelled": response.cancelled}));
    } else {
        println!("cancelled {} job(s)", response.cancelled);
    }
    Ok(ExitCode::SUCCESS)
}
