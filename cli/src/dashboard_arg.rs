//! The dashboard's flags (`expcluster coordinator`, and `submit` in embedded mode) and
//! its start beside a coordinator of this process ([`expcluster_dashboard`]).

use anyhow::Context;
use clap::Args;
use expcluster_coordinator::service::auth::Tokens;
use expcluster_coordinator::Coordinator;
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Args, Debug, Clone, Default)]
pub struct DashboardArgs {
    /// Serve the live dashboard on this address, e.g. 127.0.0.1:8080 (port 0: a free
    /// one). `submit` in embedded mode serves one on 127.0.0.1 by default.
    #[arg(long, value_name = "HOST:PORT")]
    pub dashboard: Option<String>,
    /// No dashboard (embedded mode starts one otherwise).
    #[arg(long, conflicts_with = "dashboard")]
    pub no_dashboard: bool,
    /// Serve the dashboard over plain HTTP on a non-loopback address: the login token
    /// and the session cookie then cross the network in clear.
    #[arg(long)]
    pub dashboard_insecure_http: bool,
}

impl DashboardArgs {
    /// The address to serve, if any: `--dashboard`, else `default` unless
    /// `--no-dashboard`.
    pub fn address(&self, default: Option<&str>) -> Option<String> {
        if self.no_dashboard {
            return None;
        }
        self.dashboard.clone().or(default.map(str::to_owned))
    }
}

/// Binds `address`, checks it, prints the dashboard's URL and one-time login URL on
/// stderr, and serves it on this runtime until `shutdown`.
pub async fn start(
    address: &str,
    force_plain_http: bool,
    coordinator: Arc<Coordinator>,
    tokens: &Tokens,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot serve the dashboard on {address}: choose another address with --dashboard (port 0 picks a free one), or pass --no-dashboard"))?;
    let dashboard =
        expcluster_dashboard::Dashboard::new(listener, coordinator, tokens, force_plain_http)?;
    if force_plain_http && !dashboard.is_loopback() {
        eprintln!("warning: serving the dashboard over plain HTTP on a network address (--dashboard-insecure-http): the client token and the session cookie cross the network in clear");
    }
    eprintln!(
        "dashboard: {} (log in with the client token, or once with {})",
        dashboard.url, dashboard.login_url
    );
    Ok(tokio::spawn(async move {
        if let Err(err) = dashboard.serve(shutdown).await {
            tracing::error!(%err, "the dashboard stopped");
        }
    }))
}
