//! The worker's main loop: register, heartbeat, lease for free slots, run attempts,
//! and drain on shutdown (running attempts are stopped and reported PREEMPTED, so the
//! coordinator requeues them without spending their failure budget).
//!
//! A worker started on the work dir of one that died carries on the command jobs that
//! outlived it (`adopt.rs`) before it leases anything new.

use crate::adopt::{self, Claim};
use crate::client::{channel, is_retryable, worker_client, WorkerClient};
use crate::command::StopReason;
use crate::job_wrapper::Leash;
use crate::runner::{run_attempt, Slot, WorkerContext};
use crate::session::Session;
use crate::work_dir::WorkDir;
use expcluster_proto::v1;
use expcluster_trainer::Trainer;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// How long a lease call may wait on the coordinator for work.
const LEASE_WAIT_MS: u32 = 5_000;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub coordinator: String,
    pub slots: u32,
    pub work_dir: PathBuf,
    pub hostname: String,
    /// GPU indices, one slot each (empty: CPU slots).
    pub gpus: Vec<String>,
    /// The worker token and TLS settings it presents to the coordinator.
    pub security: crate::client::ClientSecurity,
    /// Names this incarnation (e.g. Slurm job, task and restart count); may be empty.
    pub incarnation_hint: String,
    /// The host name or IP other ranks of a data-parallel gang reach this worker at
    /// (MASTER_ADDR when it runs rank 0).
    pub advertise_host: String,
    /// Where relative dataset paths of trainer jobs resolve on this node; `None`: the
    /// workspace's own path, for a filesystem shared with the coordinator.
    pub data_root: Option<PathBuf>,
}

/// Running attempts by (job, attempt, rank): two ranks of one gang may run here.
type Running = Arc<Mutex<HashMap<(String, u32, u32), watch::Sender<Option<StopReason>>>>>;

/// Runs a worker until `shutdown` resolves, then drains.
pub async fn run_worker(
    config: WorkerConfig,
    trainer: Arc<dyn Trainer>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    // Held until this function returns (or the process dies): one worker per work dir.
    let work_dir =
        WorkDir::open(&config.work_dir).map_err(|err| WorkerError::Setup(err.to_string()))?;
    let channel = channel(&config.coordinator, &config.security).map_err(|err| {
        WorkerError::Setup(format!("coordinator address {}: {err}", config.coordinator))
    })?;
    let mut client = worker_client(channel, &config.security);
    let (registered, carried, leashes) =
        register_taking_over(&mut client, &config, &work_dir).await?;
    let worker_id = registered.worker_id.clone();
    tracing::info!(%worker_id, slots = config.slots, carried_on = carried.len(), "registered with the coordinator");
    let session = Session::new(client.clone());
    let context = Arc::new(WorkerContext {
        client: client.clone(),
        session: session.clone(),
        worker_id: worker_id.clone(),
        work_dir: config.work_dir.clone(),
        trainer,
        advertise_host: config.advertise_host.clone(),
        data_root: config.data_root.clone(),
        orphan_grace: orphan_grace(registered.lease_timeout_ms),
    });
    let running: Running = Arc::default();
    let mut free_slots = slots_of(&config);
    let (slot_tx, mut slot_rx) = tokio::sync::mpsc::unbounded_channel::<Slot>();
    let slot_freed = Arc::new(Notify::new());
    let slots = SlotReturn {
        tx: slot_tx,
        freed: slot_freed.clone(),
    };
    let mut attempts = JoinSet::new();
    // Before the first heartbeat, so the carried attempts' leases are renewed.
    for claim in carried {
        let slot = take_slot(&mut free_slots, claim.record.gpu.as_deref());
        let key = (claim.record.job_id.clone(), claim.record.attempt, 0);
        let context = context.clone();
        spawn_attempt(
            &mut attempts,
            &running,
            key,
            slot,
            &slots,
            |stop, slot_free| adopt::carry_on(context, claim, stop, slot_free),
        );
    }
    // The carried attempts hold their jobs themselves now; the others were stopped.
    drop(leashes);
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        worker_id.clone(),
        running.clone(),
        Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(100))),
    ));
    tokio::pin!(shutdown);
    loop {
        while let Ok(slot) = slot_rx.try_recv() {
            free_slots.push(slot);
        }
        while attempts.try_join_next().is_some() {}
        if free_slots.is_empty() {
            tokio::select! {
                () = &mut shutdown => break,
                () = slot_freed.notified() => continue,
            }
        }
        let request = v1::LeaseRequest {
            worker_id: worker_id.clone(),
            free_slots: free_slots.len() as u32,
            wait_ms: LEASE_WAIT_MS,
        };
        let leased = tokio::select! {
            () = &mut shutdown => break,
            leased = session.lease(request) => leased,
        };
        let jobs = match leased {
            Ok(response) => response.jobs,
            Err(status) if is_retryable(&status) => {
                tracing::warn!(%status, "lease failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(status) => return Err(WorkerError::Refused(status.message().to_owned())),
        };
        for spec in jobs {
            let Some(slot) = free_slots.pop() else {
                tracing::error!(job_id = %spec.job_id, "coordinator leased more jobs than free slots");
                break;
            };
            let key = (spec.job_id.clone(), spec.attempt, spec.rank);
            if is_running(&running, &key) {
                // A coordinator that crashed before this attempt's lease was durable
                // leased it again, to this worker: the attempt runs here already.
                tracing::warn!(job_id = %spec.job_id, attempt = spec.attempt, "leased an attempt this worker already runs (its coordinator restarted): carrying on with it");
                free_slots.push(slot);
                continue;
            }
            let context = context.clone();
            let slot_gpu = slot.clone();
            spawn_attempt(
                &mut attempts,
                &running,
                key,
                Some(slot),
                &slots,
                |stop, slot_free| run_attempt(context, spec, slot_gpu, stop, slot_free),
            );
        }
    }
    tracing::info!(%worker_id, running = attempts.len(), "draining: stopping running jobs");
    for stop in running.lock().unwrap_or_else(|p| p.into_inner()).values() {
        let _ = stop.send(Some(StopReason::Preempted));
    }
    while attempts.join_next().await.is_some() {}
    heartbeat.abort();
    Ok(())
}

/// Registers, as the successor of the worker that used `work_dir` before when there
/// was one (`adopt.rs`). Returns the registration, the attempts to carry on (the
/// others are stopped), and what holds their jobs until they are carried on.
async fn register_taking_over(
    client: &mut WorkerClient,
    config: &WorkerConfig,
    work_dir: &WorkDir,
) -> Result<(v1::RegisterResponse, Vec<Claim>, Vec<Leash>), WorkerError> {
    let previous = work_dir.previous_worker_id();
    let mut claims = adopt::claims(work_dir.root());
    if previous.is_none() {
        // Without the id they ran under, nobody can vouch for them.
        claims.drain(..).for_each(Claim::give_up);
    }
    // Their watchdogs must not stop them while the coordinator is being asked.
    let leashes: Vec<Leash> = claims
        .iter()
        .map(|claim| Leash::start(&claim.dir))
        .collect();
    let registered = register(client, config, previous.as_deref(), &claims).await?;
    if let Err(err) = work_dir.remember_worker_id(&registered.worker_id) {
        tracing::warn!(%err, "cannot keep the worker id in the work dir; a worker restarted here will not carry on this one's jobs");
    }
    let (carried, refused): (Vec<Claim>, Vec<Claim>) = claims
        .into_iter()
        .partition(|claim| registered.reattached.contains(&claim.attempt_ref()));
    if !refused.is_empty() {
        tracing::warn!(
            count = refused.len(),
            "the coordinator has requeued attempts the previous worker left running; stopping them"
        );
    }
    refused.into_iter().for_each(Claim::give_up);
    Ok((registered, carried, leashes))
}

/// One slot per GPU, or `slots` CPU slots.
fn slots_of(config: &WorkerConfig) -> Vec<Slot> {
    if config.gpus.is_empty() {
        return (0..config.slots).map(|_| Slot { gpu: None }).collect();
    }
    config
        .gpus
        .iter()
        .map(|gpu| Slot {
            gpu: Some(gpu.clone()),
        })
        .collect()
}

/// Where a slot goes back when its job's process (or training) ends.
struct SlotReturn {
    tx: tokio::sync::mpsc::UnboundedSender<Slot>,
    freed: Arc<Notify>,
}

/// Runs an attempt on its own task, holding `slot` (if any) until the job ends; the
/// attempt stays in `running` (its lease renewed) until its end is reported.
fn spawn_attempt<Job>(
    attempts: &mut JoinSet<()>,
    running: &Running,
    key: (String, u32, u32),
    slot: Option<Slot>,
    slots: &SlotReturn,
    job: impl FnOnce(watch::Receiver<Option<StopReason>>, tokio::sync::oneshot::Sender<()>) -> Job,
) where
    Job: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(None);
    running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone(), stop_tx);
    let (slot_free_tx, slot_free_rx) = tokio::sync::oneshot::channel();
    if let Some(slot) = slot {
        let (tx, freed) = (slots.tx.clone(), slots.freed.clone());
        attempts.spawn(async move {
            let _ = slot_free_rx.await;
            let _ = tx.send(slot);
            freed.notify_one();
        });
    }
    let job = job(stop_rx, slot_free_tx);
    let running = running.clone();
    attempts.spawn(async move {
        job.await;
        running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    });
}

fn is_running(running: &Running, key: &(String, u32, u32)) -> bool {
    running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(key)
}

/// The free slot a carried-on attempt ran on (its GPU's, if it had one); `None` when
/// this worker has fewer slots than the last one had busy.
fn take_slot(free: &mut Vec<Slot>, gpu: Option<&str>) -> Option<Slot> {
    let index = free
        .iter()
        .position(|slot| slot.gpu.as_deref() == gpu)
        .or_else(|| (!free.is_empty()).then_some(0))?;
    Some(free.remove(index))
}

/// How long a command job runs on with no worker holding it: the coordinator's lease
/// (by then it requeues the attempt), in whole seconds, at least 2.
fn orphan_grace(lease_timeout_ms: u32) -> Duration {
    Duration::from_secs(u64::from(lease_timeout_ms).div_ceil(1000).max(2))
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Setup(String),
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
}

/// Registers, as the successor of `previous` holding `claims` when there is one. A
/// retry after a lost answer gets the same answer (`reattach.rs` in the coordinator).
async fn register(
    client: &mut WorkerClient,
    config: &WorkerConfig,
    previous: Option<&str>,
    claims: &[Claim],
) -> Result<v1::RegisterResponse, WorkerError> {
    let request = v1::RegisterRequest {
        hostname: config.hostname.clone(),
        slots: config.slots,
        gpus: config.gpus.clone(),
        incarnation_hint: config.incarnation_hint.clone(),
        previous_worker_id: previous.unwrap_or_default().to_owned(),
        held: claims.iter().map(Claim::attempt_ref).collect(),
    };
    let mut backoff = Duration::from_millis(100);
    for _ in 0..60 {
        match client.register(request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if is_retryable(&status) => {
                tracing::warn!(%status, coordinator = %config.coordinator, "coordinator not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(status) => return Err(WorkerError::Refused(status.message().to_owned())),
        }
    }
    Err(WorkerError::Setup(format!(
        "cannot reach the coordinator at {}: is it running, and is the address right?",
        config.coordinator
    )))
}

/// Heartbeats in flight at once, at most. A coordinator answers once what it wrote is
/// durable, so on a stalled disk answers wait; beats sent meanwhile still renew the
/// leases, so they go out on their period without waiting for earlier answers, up to
/// this many (several leases' worth at any sane period).
const MAX_BEATS_IN_FLIGHT: usize = 64;

/// Heartbeats on a fixed period, whatever the load and however slowly the coordinator
/// answers, and stops attempts the coordinator no longer considers current.
async fn heartbeat_loop(
    client: WorkerClient,
    worker_id: String,
    running: Running,
    period: Duration,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_BEATS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(period);
    // A late tick (a starved runtime) sends one beat, not a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut skipping = false;
    loop {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if !skipping {
                tracing::warn!(
                    MAX_BEATS_IN_FLIGHT,
                    "the coordinator has not answered the last heartbeats; skipping beats until it does"
                );
            }
            skipping = true;
            continue;
        };
        skipping = false;
        let request = v1::HeartbeatRequest {
            worker_id: worker_id.clone(),
            running: attempts_running(&running),
        };
        let mut client = client.clone();
        let running = running.clone();
        let worker_id = worker_id.clone();
        tokio::spawn(async move {
            let answer = client.heartbeat(request).await;
            drop(permit);
            match answer {
                Ok(response) => {
                    stop_what_is_no_longer_current(&response.into_inner(), &running, &worker_id)
                }
                Err(status) => tracing::warn!(%status, "heartbeat failed"),
            }
        });
    }
}

/// The attempts this worker runs, once each (a gang's ranks share one attempt).
fn attempts_running(running: &Running) -> Vec<v1::AttemptRef> {
    let current: std::collections::BTreeSet<(String, u32)> = running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .map(|(job_id, attempt, _rank)| (job_id.clone(), *attempt))
        .collect();
    current
        .into_iter()
        .map(|(job_id, attempt)| v1::AttemptRef { job_id, attempt })
        .collect()
}

/// Acts on a heartbeat's answer. Answers may come out of order; each still holds,
/// since an attempt once told to stop is never current again, and a worker the
/// coordinator forgot stays forgotten.
fn stop_what_is_no_longer_current(
    response: &v1::HeartbeatResponse,
    running: &Running,
    worker_id: &str,
) {
    let running = running.lock().unwrap_or_else(|p| p.into_inner());
    let stop_all = !response.known;
    if stop_all {
        tracing::error!(%worker_id, "the coordinator no longer knows this worker; stopping its jobs");
    }
    for ((job_id, attempt, _rank), stop) in running.iter() {
        let told = response
            .stop
            .iter()
            .any(|s| &s.job_id == job_id && s.attempt == *attempt);
        if told || stop_all {
            tracing::debug!(%job_id, attempt, "stopping an attempt that is no longer current");
            let _ = stop.send(Some(StopReason::Cancelled));
        }
    }
}
