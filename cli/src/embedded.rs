//! The embedded mode: a coordinator and local workers in this process, talking real
//! gRPC over loopback, so one machine runs exactly what a cluster runs.

use anyhow::Context;
use expcluster_coordinator::service::auth::{Authenticator, TokenPolicy, Tokens};
use expcluster_coordinator::service::server::ServerSecurity;
use expcluster_coordinator::state::records::Settings;
use expcluster_coordinator::Coordinator;
use expcluster_worker::client::ClientSecurity;
use expcluster_worker::{run_worker, WorkerConfig};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct EmbeddedCluster {
    pub address: String,
    /// The client token of this cluster, for the submitting CLI.
    pub client_security: ClientSecurity,
    coordinator: Arc<Coordinator>,
    /// Boxed: an embedded cluster is kept in enums beside small variants.
    tokens: Box<Tokens>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    dashboard: Option<JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts a coordinator on 127.0.0.1 (a free port) and `workers` local workers
    /// with `slots` slots each.
    pub async fn start(root: &Path, workers: u32, slots: u32) -> anyhow::Result<Self> {
        let tokens = embedded_tokens(root)?;
        let coordinator = Coordinator::open(root, Settings::default(), false)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let address = listener.local_addr()?.to_string();
        let (stop, stopped) = watch::channel(false);
        let security = ServerSecurity {
            auth: Authenticator::new(&tokens),
            tls: None,
        };
        let worker_security = ClientSecurity::none().with_token(tokens.worker.expose())?;
        // The dashboard's login takes the same client token.
        let client_security = ClientSecurity::none().with_token(tokens.client.expose())?;
        let server_stop = wait_for(stopped.clone());
        let served = coordinator.clone();
        let server = tokio::spawn(async move {
            if let Err(err) = expcluster_coordinator::service::server::serve(
                listener,
                served,
                security,
                server_stop,
            )
            .await
            {
                tracing::error!(%err, "embedded coordinator stopped");
            }
        });
        let scratch = root.join(".expcluster").join("local-workers");
        let mut handles = Vec::new();
        for index in 0..workers {
            let config = WorkerConfig {
                coordinator: address.clone(),
                slots,
                work_dir: scratch.join(format!("worker-{index}")),
                hostname: "local".to_owned(),
                // The local workers' gangs talk over loopback.
                advertise_host: "127.0.0.1".to_owned(),
                data_root: None,
                gpus: Vec::new(),
                incarnation_hint: String::new(),
                security: worker_security.clone(),
            };
            let worker_stop = wait_for(stopped.clone());
            handles.push(tokio::spawn(async move {
                if let Err(err) = run_worker(
                    config,
                    Arc::new(expcluster_trainer::TchTrainer),
                    worker_stop,
                )
                .await
                {
                    tracing::error!(%err, "local worker stopped");
                }
            }));
        }
        Ok(Self {
            address,
            client_security,
            coordinator,
            tokens: Box::new(tokens),
            stop,
            server,
            workers: handles,
            dashboard: None,
        })
    }

    /// Serves the live dashboard on `address` until the cluster shuts down.
    pub async fn serve_dashboard(
        &mut self,
        address: &str,
        force_plain_http: bool,
    ) -> anyhow::Result<()> {
        let shutdown = wait_for(self.stop.subscribe());
        self.dashboard = Some(
            crate::dashboard_arg::start(
                address,
                force_plain_http,
                self.coordinator.clone(),
                &self.tokens,
                shutdown,
            )
            .await?,
        );
        Ok(())
    }

    /// Drains the workers, then stops the coordinator.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = self.server.await;
        if let Some(dashboard) = self.dashboard {
            let _ = dashboard.await;
        }
    }
}

/// The workspace's tokens (written at its first start, so a later `expcluster
/// coordinator` on it finds them), or, when they cannot be had, tokens that live only
/// in this process: the embedded coordinator is reached by nobody else.
fn embedded_tokens(root: &Path) -> anyhow::Result<Tokens> {
    match Tokens::load_or_create(root, TokenPolicy::FirstStartOnly) {
        Ok(tokens) => Ok(tokens),
        Err(err) => {
            tracing::warn!(%err, "using in-process tokens for the embedded coordinator");
            Ok(Tokens::ephemeral()?)
        }
    }
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on Ctrl-C, SIGTERM or SIGUSR2 (Slurm's preemption warning; not SIGUSR1,
/// which NCCL uses).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut usr2 = signal(SignalKind::user_defined2()).ok();
    let term_recv = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let usr2_recv = async {
        match usr2.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term_recv => {}
        () = usr2_recv => {}
    }
}
