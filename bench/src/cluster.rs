//! A real coordinator in this process (the same `Coordinator::open` + `serve` the
//! embedded mode uses, tokens included) on a temporary workspace, and the gRPC
//! clients simulated workers and the submitting client use to reach it.
//!
//! The coordinator runs on a tokio runtime of its own, with threads named
//! `coordinator` (as a separate `expcluster coordinator` process would have its own),
//! so its CPU time can be told from the simulated workers' ([`CpuMeter`]).

use anyhow::Context;
use expcluster_coordinator::service::auth::{Authenticator, Tokens};
use expcluster_coordinator::service::server::ServerSecurity;
use expcluster_coordinator::state::records::Settings;
use expcluster_coordinator::Coordinator;
use expcluster_proto::v1;
use expcluster_worker::client::{
    channel, client_client, worker_client, ClientClient, ClientSecurity, WorkerClient,
};
use expcluster_worker::session::Session;
use std::time::Duration;
use tokio::sync::watch;

pub struct Cluster {
    pub address: String,
    /// Where simulated workers connect: `address`, or a relay in the namespaces mode
    /// (crate::netpath).
    pub worker_address: String,
    relay: Option<std::process::Child>,
    /// The worker token, for worker processes (`EXPCLUSTER_TOKEN`).
    pub worker_token: String,
    /// The client token (the dashboard's login).
    pub client_token: String,
    /// `http://127.0.0.1:PORT/` when the coordinator also serves its dashboard.
    pub dashboard_url: Option<String>,
    pub worker_security: ClientSecurity,
    pub client_security: ClientSecurity,
    stop: watch::Sender<bool>,
    server: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes `config.yaml` (and `files`) into a fresh workspace and serves it on a
    /// free loopback port.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::open(config, files, |_| {}, false).await
    }

    /// [`Self::start`] with `adjust` applied to the coordinator's settings.
    pub async fn start_with(
        config: &str,
        files: &[(&str, &str)],
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        Self::open(config, files, adjust, false).await
    }

    /// [`Self::start`], with the coordinator's dashboard served on its runtime (as
    /// `expcluster coordinator --dashboard` serves it).
    pub async fn start_with_dashboard(
        config: &str,
        files: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::open(config, files, |_| {}, true).await
    }

    async fn open(
        config: &str,
        files: &[(&str, &str)],
        adjust: impl FnOnce(&mut Settings),
        dashboard: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary workspace")?;
        let root = dir.path().join("bench");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("config.yaml"), config)?;
        for (name, content) in files {
            std::fs::write(root.join(name), content)?;
        }
        let tokens = Tokens::ephemeral()?;
        // Long leases: a simulated worker does not heartbeat while it is busy.
        let mut settings = Settings {
            lease_timeout: std::time::Duration::from_secs(600),
            ..Settings::default()
        };
        adjust(&mut settings);
        let coordinator = Coordinator::open(&root, settings, false)?;
        let net_path = crate::netpath::current()?;
        let bind =
            net_path.map_or_else(|| "127.0.0.1:0".to_owned(), |path| path.coordinator_bind());
        let listener =
            std::net::TcpListener::bind(&bind).with_context(|| format!("cannot bind {bind}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?.to_string();
        let (relay, worker_address) = match net_path {
            Some(path) => {
                let (relay, relay_address) = path.relay_to(&address)?;
                (Some(relay), relay_address)
            }
            None => (None, address.clone()),
        };
        let dashboard_listener = if dashboard {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        let dashboard_url = match &dashboard_listener {
            Some(listener) => Some(format!("http://{}/", listener.local_addr()?)),
            None => None,
        };
        let dashboard_tokens = tokens.clone();
        let (stop, mut stopped) = watch::channel(false);
        let security = ServerSecurity {
            auth: Authenticator::new(&tokens),
            tls: None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("coordinator")
            .enable_all()
            .build()
            .context("cannot start the coordinator's runtime")?;
        let server = std::thread::Builder::new()
            .name("coordinator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(listener) = dashboard_listener {
                        let served = coordinator.clone();
                        let mut stopped = stopped.clone();
                        tokio::spawn(async move {
                            let shutdown = async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                            };
                            let dashboard = tokio::net::TcpListener::from_std(listener)
                                .map_err(expcluster_dashboard::DashboardError::from)
                                .and_then(|listener| {
                                    expcluster_dashboard::Dashboard::new(
                                        listener,
                                        served,
                                        &dashboard_tokens,
                                        false,
                                    )
                                });
                            let served = match dashboard {
                                Ok(dashboard) => dashboard.serve(shutdown).await,
                                Err(err) => Err(err),
                            };
                            if let Err(err) = served {
                                eprintln!("the benchmark dashboard stopped: {err}");
                            }
                        });
                    }
                    let until_stopped = async move {
                        while !*stopped.borrow_and_update() {
                            if stopped.changed().await.is_err() {
                                return;
                            }
                        }
                    };
                    let served = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => expcluster_coordinator::service::server::serve(
                            listener,
                            coordinator,
                            security,
                            until_stopped,
                        )
                        .await
                        .map_err(|err| err.to_string()),
                        Err(err) => Err(err.to_string()),
                    };
                    if let Err(err) = served {
                        eprintln!("the benchmark coordinator stopped: {err}");
                    }
                })
            })?;
        Ok(Self {
            address,
            worker_address,
            relay,
            worker_token: tokens.worker.expose().to_owned(),
            client_token: tokens.client.expose().to_owned(),
            dashboard_url,
            worker_security: ClientSecurity::none().with_token(tokens.worker.expose())?,
            client_security: ClientSecurity::none().with_token(tokens.client.expose())?,
            stop,
            server: Some(server),
            _dir: dir,
        })
    }

    /// A worker client on its own connection (as a separate worker process has).
    pub fn worker(&self) -> anyhow::Result<WorkerClient> {
        Ok(worker_client(
            channel(&self.worker_address, &self.worker_security)?,
            &self.worker_security,
        ))
    }

    pub fn client(&self) -> anyhow::Result<ClientClient> {
        Ok(client_client(
            channel(&self.address, &self.client_security)?,
            &self.client_security,
        ))
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut relay) = self.relay.take() {
            let _ = relay.kill();
            let _ = relay.wait();
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || server.join()).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.as_mut() {
            let _ = relay.kill();
            let _ = relay.wait();
        }
    }
}

/// Registers a simulated worker; returns its id.
pub async fn register(client: &mut WorkerClient, slots: u32) -> anyhow::Result<String> {
    let response = client
        .register(v1::RegisterRequest {
            hostname: "sim".to_owned(),
            slots,
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().worker_id)
}

/// Completes an attempt as succeeded with `metric_count` acknowledged points.
pub async fn complete(
    session: &Session,
    worker_id: &str,
    job: &v1::JobSpec,
    metric_count: u64,
) -> anyhow::Result<()> {
    session
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

/// Completes every job in `jobs` as succeeded (no metric points), side by side on
/// the session.
pub async fn complete_all(
    session: &Session,
    worker_id: &str,
    jobs: &[v1::JobSpec],
) -> anyhow::Result<()> {
    futures::future::try_join_all(jobs.iter().map(|job| complete(session, worker_id, job, 0)))
        .await?;
    Ok(())
}

/// Submits a stage and returns how many jobs it queued.
pub async fn submit(client: &mut ClientClient, stage: &str, rerun: bool) -> anyhow::Result<u32> {
    let response = client
        .submit_stage(v1::SubmitStageRequest {
            stage: stage.to_owned(),
            rerun,
            seeds_for_power: false,
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

/// CPU time used over a stretch of wall time, by the coordinator and by the whole
/// process (coordinator and simulated workers).
pub struct CpuMeter {
    at: std::time::Instant,
    coordinator: Duration,
    process: Duration,
}

/// What a [`CpuMeter`] measured.
pub struct CpuUse {
    /// CPU time of the coordinator's threads.
    pub coordinator: Duration,
    /// Cores busy on average: the coordinator's threads, the whole process.
    pub cores: (f64, f64),
}

impl CpuMeter {
    pub fn start() -> Self {
        Self {
            at: std::time::Instant::now(),
            coordinator: coordinator_cpu(),
            process: process_cpu(),
        }
    }

    /// The CPU used since [`Self::start`].
    pub fn stop(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let coordinator = coordinator_cpu().saturating_sub(self.coordinator);
        let process = process_cpu().saturating_sub(self.process);
        CpuUse {
            coordinator,
            cores: (
                coordinator.as_secs_f64() / wall,
                process.as_secs_f64() / wall,
            ),
        }
    }
}

impl CpuUse {
    /// The coordinator's CPU time per one of `count` units of work.
    pub fn coordinator_per(&self, count: u64) -> Duration {
        self.coordinator.div_f64(count.max(1) as f64)
    }
}

/// CPU time (user + system) used so far by this process's coordinator threads: its
/// runtime (`coordinator`) and its fsync thread (`group-commit`), from
/// /proc/self/task/*/stat. Threads that have exited are not counted, so read it
/// while the coordinator runs.
fn coordinator_cpu() -> Duration {
    threads_cpu(|comm| comm == "coordinator" || comm == "group-commit")
}

/// CPU time (user + system) used so far by every thread of this process.
fn process_cpu() -> Duration {
    threads_cpu(|_| true)
}

/// CPU time of the live threads of this process whose name `pick` accepts.
fn threads_cpu(pick: impl Fn(&str) -> bool) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((comm, cpu)) = stat_cpu(&stat) {
            if pick(comm) {
                total += cpu;
            }
        }
    }
    total
}

/// CPU time (user + system) used so far by the calling thread.
pub fn this_thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| stat_cpu(&stat).map(|(_, cpu)| cpu))
        .unwrap_or_default()
}

/// A thread's name and CPU time (user + system) from its /proc `stat` line.
fn stat_cpu(stat: &str) -> Option<(&str, Duration)> {
    // /proc reports times in USER_HZ ticks, which Linux fixes at 100 for user space
    // on every architecture (sysconf(_SC_CLK_TCK) would need unsafe code).
    const TICKS_PER_S: f64 = 100.0;
    // "tid (comm) state ...": comm may hold spaces, so split at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = &stat[open + 1..close];
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(14).unwrap_or(0) + field(15).unwrap_or(0);
    Some((comm, Duration::from_secs_f64(ticks as f64 / TICKS_PER_S)))
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
