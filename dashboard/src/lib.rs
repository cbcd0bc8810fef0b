//! The coordinator's live dashboard: stages and their progress, a stage's jobs,
//! learning curves that grow as the jobs run (mean ± 95% CI across seeds), a job's
//! live stdout/stderr, the claims' verdicts, the idea's versions and the workers.
//!
//! Design. An axum server on the coordinator's own tokio runtime, with the
//! coordinator in the same process: it reads snapshots
//! ([`expcluster_coordinator::service::snapshot`]) and follows the live feed
//! ([`expcluster_coordinator::store::live_feed`]) that the coordinator publishes as it stores
//! points, log pieces and events. The browser gets a snapshot over JSON, then every
//! change over one Server-Sent Events stream ([`stream`]); nothing polls files. A
//! client that falls behind the bounded feed is told to reload its snapshot instead
//! of slowing the coordinator. Claims and the idea's history come from the
//! workspace's files, read when the page asks (they change once per stage).
//!
//! Access ([`access`]) is the workspace's client token: a login page, or the
//! one-time URL printed at start-up, sets an HttpOnly session cookie; API callers
//! may send `Authorization: Bearer`. The worker token and anything else get no data.
//! Plain HTTP is served on loopback only unless forced ([`check_address`]).
//!
//! The page is static HTML, CSS and JavaScript compiled into the binary
//! ([`assets`]): clusters are often offline, so there is no CDN. It builds its DOM
//! with `textContent` only, so every string that came from a config or a job (a
//! method called `<script>`) shows as text.

pub mod access;
mod api;
mod assets;
mod files;
mod stream;

pub use stream::drain_as_messages;

use access::Access;
use expcluster_coordinator::service::auth::Tokens;
use expcluster_coordinator::Coordinator;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("refusing to serve the dashboard on {0} over plain HTTP: the login token and the session cookie would cross the network in clear. Serve it on 127.0.0.1 and reach it through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 this-host), or pass --dashboard-insecure-http if this network is trusted")]
    PlainHttpOffLoopback(SocketAddr),
    #[error("cannot serve the dashboard: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot make the dashboard's login code: {0}")]
    Random(String),
}

/// Plain HTTP on a non-loopback address only when the operator forces it.
pub fn check_address(address: SocketAddr, force_plain_http: bool) -> Result<(), DashboardError> {
    if address.ip().is_loopback() || force_plain_http {
        Ok(())
    } else {
        Err(DashboardError::PlainHttpOffLoopback(address))
    }
}

/// A dashboard bound and ready to serve.
pub struct Dashboard {
    listener: TcpListener,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    /// `http://host:port/`.
    pub url: String,
    /// The one-time login URL: opening it logs the browser in once.
    pub login_url: String,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub coordinator: Arc<Coordinator>,
    pub access: Access,
    /// Turns true at shutdown: live streams end then (a graceful shutdown waits for
    /// every connection, and an event stream would otherwise never end).
    pub stopping: watch::Receiver<bool>,
}

impl Dashboard {
    /// Checks the bound address (see [`check_address`]) and prepares the access
    /// rules for `tokens` (the coordinator's).
    pub fn new(
        listener: TcpListener,
        coordinator: Arc<Coordinator>,
        tokens: &Tokens,
        force_plain_http: bool,
    ) -> Result<Self, DashboardError> {
        let address = listener.local_addr()?;
        check_address(address, force_plain_http)?;
        let access = Access::new(tokens)?;
        let url = format!("http://{address}/");
        let login_url = format!("{url}login?once={}", access.one_time_code());
        let (stop, stopping) = watch::channel(false);
        Ok(Self {
            listener,
            state: Arc::new(AppState {
                coordinator,
                access,
                stopping,
            }),
            stop,
            url,
            login_url,
        })
    }

    /// Whether it listens on a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.listener
            .local_addr()
            .is_ok_and(|address| address.ip().is_loopback())
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let router = router(self.state);
        let stop = self.stop;
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await?;
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> axum::Router {
    use axum::routing::get;
    let data = axum::Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::app_js))
        .route("/chart.js", get(assets::chart_js))
        .route("/style.css", get(assets::style_css))
        .route("/api/overview", get(api::overview))
        .route("/api/stages/{stage}/jobs", get(api::stage_jobs))
        .route("/api/stages/{stage}/series", get(api::stage_series))
        .route("/api/jobs/{job}/series", get(api::job_series))
        .route("/api/jobs/{job}/log", get(api::job_log))
        .route("/api/claims", get(api::claims))
        .route("/api/idea", get(api::idea))
        .route("/api/events", get(stream::events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_client,
        ));
    axum::Router::new()
        .route("/login", get(access::login_page).post(access::login_form))
        .merge(data)
        .with_state(state)
}
