//! `expcluster coordinator`: serve a workspace.

use super::WorkspaceArgs;
use crate::workspace_arg;
use anyhow::Context;
use clap::Args;
use expcluster_coordinator::state::Settings;
use expcluster_coordinator::Coordinator;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CoordinatorCmd {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Address to listen on; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Move a damaged part of research_log.jsonl aside (a backup is kept) and start.
    #[arg(long)]
    pub repair: bool,
}

pub async fn run(args: CoordinatorCmd) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(args.workspace.workspace.as_deref(), args.workspace.idea.as_deref())?;
    let coordinator = Coordinator::open(&root, Settings::default(), args.repair)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another coordinator using it? choose another with --listen", args.listen))?;
    let address = listener.local_addr()?;
    // The one line scripts and tests read to learn the port.
    println!("expcluster coordinator listening on {address} for {}", root.display());
    expcluster_coordinator::server::serve(listener, coordinator, crate::embedded::shutdown_signal()).await?;
    eprintln!("coordinator stopped");
    Ok(ExitCode::SUCCESS)
}
