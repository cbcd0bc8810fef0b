//! One attempt from lease to completion: prepare the directory, run, upload results
//! and logs, wait until every metric point is acknowledged, report the end.

use crate::attempt_record::{AttemptRecord, ProcessId};
use crate::client::{is_retryable, WorkerClient};
use crate::command::{job_environment, run_command, Launch, RunEnd, StopReason};
use crate::gang::{torchrun_environment, CoordinatorRendezvous, GangRole};
use crate::job_dir::JobDir;
use crate::reporter::MetricSender;
use crate::reporter::{self, ReportEnd};
use crate::session::Session;
use crate::trainer_job::{run_trainer, TrainerGang, TrainerRun};
use expcluster_proto::v1;
use expcluster_trainer::{DeviceChoice, Trainer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Logs are uploaded up to this size (their tail is kept).
const MAX_LOG_UPLOAD: usize = 8 * 1024 * 1024;
/// How long a finished attempt keeps trying to report to an unreachable coordinator.
const REPORT_PATIENCE: Duration = Duration::from_secs(600);

/// What every attempt on this worker shares.
pub struct WorkerContext {
    pub client: WorkerClient,
    /// Leases and completions go over this stream (the other calls are unary).
    pub session: Session,
    pub worker_id: String,
    pub work_dir: PathBuf,
    pub trainer: Arc<dyn Trainer>,
    /// The address other ranks of a gang reach this worker at.
    pub advertise_host: String,
    /// Where relative dataset paths resolve (`--data-root`); `None`: the workspace.
    pub data_root: Option<PathBuf>,
    /// How long a command job runs on once no worker holds it (the coordinator's
    /// lease: by then the attempt is requeued).
    pub orphan_grace: Duration,
}

/// The slot an attempt runs on.
#[derive(Debug, Clone)]
pub struct Slot {
    pub gpu: Option<String>,
}

/// Runs one leased attempt to its reported end.
///
/// `slot_free` is sent (or dropped) as soon as the job itself has ended: reporting
/// its end (the last metric acknowledgements, uploads, the completion) waits on the
/// coordinator's disk, not on the slot's CPU or GPU, so the next job may start
/// meanwhile.
pub async fn run_attempt(
    context: Arc<WorkerContext>,
    spec: v1::JobSpec,
    slot: Slot,
    stop: watch::Receiver<Option<StopReason>>,
    slot_free: tokio::sync::oneshot::Sender<()>,
) {
    let started = Instant::now();
    let job_id = spec.job_id.clone();
    let attempt = spec.attempt;
    let span =
        tracing::info_span!("attempt", job_id = %job_id, attempt, worker_id = %context.worker_id);
    let _entered = span.enter();
    drop(_entered);
    let dir = match JobDir::create(&context.work_dir, &spec) {
        Ok(dir) => dir,
        Err(err) => {
            let request = completion(
                &context,
                &spec,
                v1::Outcome::Failed,
                -1,
                format!("cannot prepare the job directory: {err}"),
                String::new(),
                0,
                started,
            );
            send_completion(&context, request).await;
            return;
        }
    };
    let gang = GangRole::of(&spec);
    let primary = gang.is_none_or(|role| role.is_primary());
    // Rank 0 speaks for a gang: the other ranks' metrics are not reported.
    let (metrics, reporter) = if primary {
        let (metrics, reporter) = reporter::start(
            context.client.clone(),
            context.worker_id.clone(),
            job_id.clone(),
            attempt,
            &dir.root.join("metrics.spool.jsonl"),
        );
        (metrics, Some(reporter))
    } else {
        (MetricSender::discarding(), None)
    };
    let rendezvous = CoordinatorRendezvous {
        client: context.client.clone(),
        worker_id: context.worker_id.clone(),
        job_id: job_id.clone(),
        attempt,
        rank: spec.rank,
    };
    // Rank 0's output is the job's; the other ranks' logs stay in their job folders.
    let live_logs = primary.then(|| crate::log_stream::start(&context, &spec, &dir.root));
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    let (end, error, stderr_tail) = match &spec.kind {
        Some(v1::job_spec::Kind::Command(command)) => {
            let mut env = job_environment(&spec, &dir, slot.gpu.as_deref());
            let torchrun = match gang {
                Some(role) => {
                    gang_environment(role, &rendezvous, &context.advertise_host, stop.clone()).await
                }
                None => Ok(Vec::new()),
            };
            // An ordinary attempt is recorded so a worker restarted here can carry it
            // on; a gang's ring breaks with any rank, so a gang is requeued instead.
            let record = |pid| {
                let Some(process) = ProcessId::of(pid).filter(|_| gang.is_none()) else {
                    return;
                };
                let record = AttemptRecord {
                    job_id: job_id.clone(),
                    attempt,
                    timeout_ms: spec.timeout_ms,
                    started_unix_ms: unix_ms(),
                    gpu: slot.gpu.clone(),
                    process,
                };
                if let Err(err) = record.write(&dir.root) {
                    tracing::warn!(%job_id, attempt, %err, "cannot record the attempt; a restarted worker will not carry it on");
                }
            };
            match torchrun {
                Ok(torchrun) => {
                    env.extend(torchrun);
                    let launch = Launch {
                        command,
                        env,
                        timeout,
                        orphan_grace: context.orphan_grace,
                    };
                    match run_command(launch, &dir, metrics, stop, record).await {
                        Ok((end, tail)) => (end, String::new(), tail),
                        Err(err) => (RunEnd::Exited { code: 127 }, err.to_string(), String::new()),
                    }
                }
                Err(RendezvousEnd::Stopped(reason)) => {
                    (RunEnd::Stopped(reason), String::new(), String::new())
                }
                Err(RendezvousEnd::Failed(err)) => (RunEnd::Exited { code: 1 }, err, String::new()),
            }
        }
        Some(v1::job_spec::Kind::Trainer(trainer)) => {
            let device = match slot
                .gpu
                .as_deref()
                .and_then(|gpu| gpu.parse::<usize>().ok())
            {
                Some(index) => DeviceChoice::Cuda(index),
                None => DeviceChoice::Cpu,
            };
            let run = TrainerRun {
                seed: spec.seed,
                device,
                data_root: context
                    .data_root
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&spec.workspace_dir)),
                checkpoint_dir: checkpoint_dir(&context.work_dir, &spec),
                timeout,
                gang: gang.map(|role| TrainerGang {
                    role,
                    rendezvous: rendezvous.clone(),
                    advertise_host: context.advertise_host.clone(),
                }),
            };
            let (end, error) = run_trainer(
                context.trainer.clone(),
                &trainer.spec_json,
                run,
                &dir,
                metrics,
                stop,
            )
            .await;
            (end, error.clone(), error)
        }
        None => (
            RunEnd::Exited { code: 2 },
            "the job spec names no command and no trainer".to_owned(),
            String::new(),
        ),
    };
    if let Some(live_logs) = live_logs {
        live_logs.stop();
    }
    let _ = slot_free.send(());
    let ran = Ran {
        end,
        error,
        stderr_tail,
        timeout,
        started,
    };
    report_end(&context, &spec, &dir, ran, reporter).await;
}

/// How a job ran, before it is reported.
pub struct Ran {
    pub end: RunEnd,
    pub error: String,
    pub stderr_tail: String,
    pub timeout: Duration,
    pub started: Instant,
}

/// Reports an attempt whose job has ended: waits until every metric point is
/// acknowledged, uploads the results and logs, reports the end, and forgets the
/// attempt's record.
pub async fn report_end(
    context: &WorkerContext,
    spec: &v1::JobSpec,
    dir: &JobDir,
    ran: Ran,
    reporter: Option<tokio::task::JoinHandle<ReportEnd>>,
) {
    report(context, spec, dir, ran, reporter).await;
    AttemptRecord::remove(&dir.root);
}

async fn report(
    context: &WorkerContext,
    spec: &v1::JobSpec,
    dir: &JobDir,
    ran: Ran,
    reporter: Option<tokio::task::JoinHandle<ReportEnd>>,
) {
    let Ran {
        end,
        error,
        stderr_tail,
        timeout,
        started,
    } = ran;
    let job_id = &spec.job_id;
    let attempt = spec.attempt;
    let (outcome, exit_code, error) = classify(&end, error, timeout);
    let (outcome, error, metric_count) = match reporter {
        // A rank other than 0: only its end is reported (a failure stops the gang).
        None => (outcome, error, 0),
        Some(reporter) => {
            let metric_count = match reporter.await {
                Ok(ReportEnd::AllAcked(count)) => count,
                Ok(ReportEnd::Refused(reason)) => {
                    tracing::warn!(%job_id, attempt, %reason, "the coordinator refused this attempt's metrics; abandoning it");
                    return;
                }
                Err(err) => {
                    tracing::error!(%job_id, attempt, %err, "metric reporter failed");
                    return;
                }
            };
            // The logs and the result arrays go up side by side (each upload is
            // answered after a shared fsync on the coordinator, so one round trip
            // serves them all); both are in before the completion, which ends the
            // attempt's right to upload.
            let results = async {
                if outcome == v1::Outcome::Succeeded {
                    upload_results(context, spec, dir).await
                } else {
                    Ok(())
                }
            };
            let (results, ()) = tokio::join!(results, upload_logs(context, spec, dir));
            match results {
                Ok(()) => (outcome, error, metric_count),
                Err(err) => (
                    v1::Outcome::Failed,
                    format!("uploading results failed: {err}"),
                    metric_count,
                ),
            }
        }
    };
    let request = completion(
        context,
        spec,
        outcome,
        exit_code,
        error,
        stderr_tail,
        metric_count,
        started,
    );
    send_completion(context, request).await;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where an attempt keeps its checkpoints. On a cluster the experiment workspace is on
/// a shared filesystem, so a requeued attempt on another node resumes from the same
/// folder (`.expcluster/checkpoints/`, private to expcluster, never part of the
/// record); a worker that cannot see the workspace keeps them in its scratch folder.
pub fn checkpoint_dir(work_dir: &std::path::Path, spec: &v1::JobSpec) -> PathBuf {
    let shared = std::path::Path::new(&spec.workspace_dir).join(".expcluster");
    let base = if shared.is_dir() {
        shared
    } else {
        work_dir.to_path_buf()
    };
    base.join("checkpoints")
        .join(&spec.job_id)
        .join(&spec.fingerprint)
}

/// Why a command rank did not get its torchrun environment.
enum RendezvousEnd {
    Stopped(StopReason),
    Failed(String),
}

/// Waits for the gang's rendezvous, unless the attempt is stopped first.
async fn gang_environment(
    role: GangRole,
    rendezvous: &CoordinatorRendezvous,
    advertise_host: &str,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> Result<Vec<(String, String)>, RendezvousEnd> {
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let environment = torchrun_environment(role, rendezvous, advertise_host, &cancel);
    tokio::pin!(environment);
    loop {
        tokio::select! {
            result = &mut environment => return result.map_err(RendezvousEnd::Failed),
            changed = stop.changed() => {
                let reason = *stop.borrow();
                match (changed, reason) {
                    (Ok(()), Some(reason)) => return Err(RendezvousEnd::Stopped(reason)),
                    (Ok(()), None) => {}
                    (Err(_), _) => return (&mut environment).await.map_err(RendezvousEnd::Failed),
                }
            }
        }
    }
}

fn classify(end: &RunEnd, error: String, timeout: Duration) -> (v1::Outcome, i32, String) {
    match end {
        RunEnd::Exited { code: 0 } if error.is_empty() => (v1::Outcome::Succeeded, 0, error),
        RunEnd::Exited { code } => {
            let error = if error.is_empty() {
                format!("exited with status {code}")
            } else {
                error
            };
            (v1::Outcome::Failed, *code, error)
        }
        RunEnd::Signalled { signal } => (
            v1::Outcome::Failed,
            -1,
            format!("killed by signal {signal}"),
        ),
        RunEnd::TimedOut => (
            v1::Outcome::Failed,
            -1,
            format!("timed out after {}", humanize(timeout)),
        ),
        RunEnd::Stopped(StopReason::Preempted) => (
            v1::Outcome::Preempted,
            -1,
            "preempted: the worker is draining".to_owned(),
        ),
        RunEnd::Stopped(StopReason::Cancelled) => {
            (v1::Outcome::Cancelled, -1, "cancelled".to_owned())
        }
        RunEnd::PeerLost => (v1::Outcome::PeerLost, -1, error),
        // Not the job's fault as far as anyone can tell: requeued, no budget spent.
        RunEnd::Lost => (
            v1::Outcome::Preempted,
            -1,
            "the job's processes ended while no worker held the attempt, and how is unknown"
                .to_owned(),
        ),
    }
}

fn humanize(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[allow(clippy::too_many_arguments)]
fn completion(
    context: &WorkerContext,
    spec: &v1::JobSpec,
    outcome: v1::Outcome,
    exit_code: i32,
    error: String,
    stderr_tail: String,
    metric_count: u64,
    started: Instant,
) -> v1::CompleteRequest {
    v1::CompleteRequest {
        worker_id: context.worker_id.clone(),
        job_id: spec.job_id.clone(),
        attempt: spec.attempt,
        outcome: outcome as i32,
        exit_code,
        error,
        stderr_tail,
        metric_count,
        duration_s: started.elapsed().as_secs_f64(),
        rank: spec.rank,
    }
}

async fn upload_results(
    context: &WorkerContext,
    spec: &v1::JobSpec,
    dir: &JobDir,
) -> Result<(), String> {
    let files = dir.result_files().map_err(|err| err.to_string())?;
    let limit = expcluster_proto::MAX_MESSAGE_BYTES - 4096;
    for (name, path) in files {
        // Checked before reading, so a huge file is refused without loading it.
        let size = std::fs::metadata(&path)
            .map_err(|err| format!("{name}: {err}"))?
            .len();
        if size > limit as u64 {
            return Err(format!("{name} is {size} bytes, more than the upload limit of {limit}: save smaller arrays"));
        }
        let content = std::fs::read(&path).map_err(|err| format!("{name}: {err}"))?;
        let upload = v1::ArtifactUpload {
            worker_id: context.worker_id.clone(),
            job_id: spec.job_id.clone(),
            attempt: spec.attempt,
            name: name.clone(),
            content,
            kind: v1::ArtifactKind::Result as i32,
        };
        with_retries(context, |mut client| {
            let upload = upload.clone();
            async move { client.upload_artifact(upload).await.map(|_| ()) }
        })
        .await
        .map_err(|status| format!("{name}: {}", status.message()))?;
    }
    Ok(())
}

/// Uploads the attempt's three logs concurrently.
async fn upload_logs(context: &WorkerContext, spec: &v1::JobSpec, dir: &JobDir) {
    let uploads = ["stdout", "stderr", "worker"].map(|name| upload_log(context, spec, dir, name));
    futures::future::join_all(uploads).await;
}

async fn upload_log(context: &WorkerContext, spec: &v1::JobSpec, dir: &JobDir, name: &str) {
    let Ok(mut content) = std::fs::read(dir.root.join(format!("{name}.log"))) else {
        return;
    };
    if content.len() > MAX_LOG_UPLOAD {
        content.drain(..content.len() - MAX_LOG_UPLOAD);
    }
    let upload = v1::ArtifactUpload {
        worker_id: context.worker_id.clone(),
        job_id: spec.job_id.clone(),
        attempt: spec.attempt,
        name: name.to_owned(),
        content,
        kind: v1::ArtifactKind::Log as i32,
    };
    let result = with_retries(context, |mut client| {
        let upload = upload.clone();
        async move { client.upload_artifact(upload).await.map(|_| ()) }
    })
    .await;
    if let Err(status) = result {
        tracing::warn!(job_id = %spec.job_id, log = name, %status, "log not uploaded");
    }
}

async fn send_completion(context: &WorkerContext, request: v1::CompleteRequest) {
    let result = with_retries(context, |_| {
        let request = request.clone();
        async move { context.session.complete(request).await.map(|_| ()) }
    })
    .await;
    if let Err(status) = result {
        tracing::warn!(job_id = %request.job_id, attempt = request.attempt, %status, "completion refused");
    }
}

/// Retries a call while the coordinator is unreachable or asks to retry later.
async fn with_retries<F, Fut>(context: &WorkerContext, call: F) -> Result<(), tonic::Status>
where
    F: Fn(WorkerClient) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = Instant::now() + REPORT_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        match call(context.client.clone()).await {
            Ok(()) => return Ok(()),
            Err(status) if is_retryable(&status) && Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(status) => return Err(status),
        }
    }
}
