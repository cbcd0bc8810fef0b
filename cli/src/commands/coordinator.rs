//! `expcluster coordinator`: serve a workspace.

use super::WorkspaceArgs;
use crate::workspace_arg;
use anyhow::Context;
use clap::Args;
use expcluster_coordinator::service::auth::{TokenPolicy, Tokens};
use expcluster_coordinator::state::records::Settings;
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
    #[command(flatten)]
    pub security: crate::connect::ServeArgs,
    /// How often workers heartbeat (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: std::time::Duration,
    /// A worker silent this long loses its jobs to other workers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_timeout: std::time::Duration,
    /// After a restart, extra time workers get to reattach before any is declared lost.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub restart_grace: std::time::Duration,
    #[command(flatten)]
    pub dashboard: crate::dashboard_arg::DashboardArgs,
}

pub async fn run(args: CoordinatorCmd) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    // Before anything else: a coordinator that cannot read its tokens does not start.
    let security = args.security.server_security(&root, &args.listen)?;
    let coordinator = Coordinator::open(
        &root,
        Settings {
            heartbeat_interval: args.heartbeat_interval,
            lease_timeout: args.lease_timeout,
            restart_grace: args.restart_grace,
            ..Settings::default()
        },
        args.repair,
    )?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another coordinator using it? choose another with --listen", args.listen))?;
    let address = listener.local_addr()?;
    expcluster_coordinator::service::server::check_listen_address(address, &security.auth)?;
    // The one line scripts and tests read to learn the port.
    println!(
        "expcluster coordinator listening on {address} for {}",
        root.display()
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dashboard = match args.dashboard.address(None) {
        Some(dashboard_address) => {
            if args.security.insecure_no_auth {
                anyhow::bail!("the dashboard's login is the client token, and --insecure-no-auth has none: drop --insecure-no-auth or --dashboard");
            }
            let tokens = Tokens::load_or_create(&root, TokenPolicy::FirstStartOnly)?;
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            Some(
                crate::dashboard_arg::start(
                    &dashboard_address,
                    args.dashboard.dashboard_insecure_http,
                    coordinator.clone(),
                    &tokens,
                    shutdown,
                )
                .await?,
            )
        }
        None => None,
    };
    let served = expcluster_coordinator::service::server::serve(
        listener,
        coordinator,
        security,
        crate::embedded::shutdown_signal(),
    )
    .await;
    let _ = stop.send(true);
    if let Some(dashboard) = dashboard {
        let _ = dashboard.await;
    }
    served?;
    eprintln!("coordinator stopped");
    Ok(ExitCode::SUCCESS)
}
