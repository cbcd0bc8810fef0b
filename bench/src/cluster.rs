//! A real coordinator in this process (the same `Coordinator::open` + `serve` the
//! embedded mode uses, tokens included) on a temporary workspace, and the gRPC
//! clients simulated workers and the submitting client use to reach it.

use anyhow::Context;
use expcluster_coordinator::auth::{Authenticator, Tokens};
use expcluster_coordinator::server::ServerSecurity;
use expcluster_coordinator::state::Settings;
use expcluster_coordinator::Coordinator;
use expcluster_proto::v1;
use expcluster_worker::client::{
    channel, client_client, worker_client, ClientClient, ClientSecurity, WorkerClient,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub address: String,
    /// The worker token, for worker processes (`EXPCLUSTER_TOKEN`).
    pub worker_token: String,
    pub worker_security: ClientSecurity,
    pub client_security: ClientSecurity,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes `config.yaml` (and `files`) into a fresh workspace and serves it on a
    /// free loopback port.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary workspace")?;
        let root = dir.path().join("bench");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("config.yaml"), config)?;
        for (name, content) in files {
            std::fs::write(root.join(name), content)?;
        }
        let tokens = Tokens::ephemeral()?;
        // Long leases: a simulated worker does not heartbeat while it is busy.
        let settings = Settings {
            lease_timeout: std::time::Duration::from_secs(600),
            ..Settings::default()
        };
        let coordinator = Coordinator::open(&root, settings, false)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let address = listener.local_addr()?.to_string();
        let (stop, mut stopped) = watch::channel(false);
        let security = ServerSecurity {
            auth: Authenticator::new(&tokens),
            tls: None,
        };
        let server = tokio::spawn(async move {
            let until_stopped = async move {
                while !*stopped.borrow_and_update() {
                    if stopped.changed().await.is_err() {
                        return;
                    }
                }
            };
            if let Err(err) = expcluster_coordinator::server::serve(
                listener,
                coordinator,
                security,
                until_stopped,
            )
            .await
            {
                eprintln!("the benchmark coordinator stopped: {err}");
            }
        });
        Ok(Self {
            address,
            worker_token: tokens.worker.expose().to_owned(),
            worker_security: ClientSecurity::none().with_token(tokens.worker.expose())?,
            client_security: ClientSecurity::none().with_token(tokens.client.expose())?,
            stop,
            server,
            _dir: dir,
        })
    }

    /// A worker client on its own connection (as a separate worker process has).
    pub fn worker(&self) -> anyhow::Result<WorkerClient> {
        Ok(worker_client(
            channel(&self.address, &self.worker_security)?,
            &self.worker_security,
        ))
    }

    pub fn client(&self) -> anyhow::Result<ClientClient> {
        Ok(client_client(
            channel(&self.address, &self.client_security)?,
            &self.client_security,
        ))
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

/// Registers a simulated worker; returns its id.
pub async fn register(client: &mut WorkerClient, slots: u32) -> anyhow::Result<String> {
    let response = client
        .register(v1::RegisterRequest {
            hostname: "sim".to_owned(),
            slots,
            gpus: Vec::new(),
            incarnation_hint: String::new(),
        })
        .await?;
    Ok(response.into_inner().worker_id)
}

/// Completes an attempt as succeeded with `metric_count` acknowledged points.
pub async fn complete(
    client: &mut WorkerClient,
    worker_id: &str,
    job: &v1::JobSpec,
    metric_count: u64,
) -> anyhow::Result<()> {
    client
        .complete(v1::CompleteRequest {
            worker_id: worker_id.to_owned(),
            job_id: job.job_id.clone(),
            attempt: job.attempt,
            outcome: v1::Outcome::Succeeded as i32,
            exit_code: 0,
            error: String::new(),
            stderr_tail: String::new(),
            metric_count,
            duration_s: 0.0,
            rank: 0,
        })
        .await?;
    Ok(())
}

/// Submits a stage and returns how many jobs it queued.
pub async fn submit(client: &mut ClientClient, stage: &str, rerun: bool) -> anyhow::Result<u32> {
    let response = client
        .submit_stage(v1::SubmitStageRequest {
            stage: stage.to_owned(),
            rerun,
        })
        .await?
        .into_inner();
    Ok(response.jobs_total - response.jobs_reused)
}

/// Polls until the stage's latest run is finished.
pub async fn wait_finished(
    client: &mut ClientClient,
    stage: &str,
) -> anyhow::Result<v1::StageStatusResponse> {
    loop {
        let status = client
            .stage_status(v1::StageStatusRequest {
                stage: stage.to_owned(),
            })
            .await?
            .into_inner();
        if status.finished {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// This process's resident memory in bytes, from /proc/self/status (VmRSS).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}
