//! Trainer jobs: the built-in tch trainer on a blocking thread, its metrics streamed
//! through the same reporter as command jobs.

use crate::command::{RunEnd, StopReason};
use crate::gang::{BlockingRendezvous, CoordinatorRendezvous, GangRole};
use crate::job_dir::JobDir;
use crate::reporter::MetricSender;
use expcluster_trainer::{
    DeviceChoice, DistributedRole, MetricSink, TrainError, TrainJob, Trainer, TrainerSpec,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

struct SenderSink(MetricSender);

impl MetricSink for SenderSink {
    fn emit(&mut self, name: &str, value: f64) {
        self.0.send(name, value);
    }
}

/// Everything a trainer run needs besides the spec.
pub struct TrainerRun {
    pub seed: u64,
    pub device: DeviceChoice,
    pub data_root: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub timeout: Duration,
    /// Set for one rank of a data-parallel gang.
    pub gang: Option<TrainerGang>,
}

/// One rank's part in a data-parallel trainer job.
pub struct TrainerGang {
    pub role: GangRole,
    pub rendezvous: CoordinatorRendezvous,
    pub advertise_host: String,
}

/// Trains to the end, or until stopped or timed out (the trainer checkpoints first).
/// Returns how it ended and an error text for failures.
pub async fn run_trainer(
    trainer: Arc<dyn Trainer>,
    spec_json: &str,
    run: TrainerRun,
    dir: &JobDir,
    metrics: MetricSender,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> (RunEnd, String) {
    let spec = match serde_json::from_str(spec_json)
        .map_err(|err| err.to_string())
        .and_then(|value| TrainerSpec::from_json(&value))
    {
        Ok(spec) => spec,
        Err(reason) => {
            return (
                RunEnd::Exited { code: 2 },
                format!("invalid trainer spec: {reason}"),
            )
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let output = dir.output.clone();
    let thread_cancel = cancel.clone();
    let runtime = tokio::runtime::Handle::current();
    let mut training = tokio::task::spawn_blocking(move || {
        let gang = run.gang.map(|gang| {
            let rendezvous = BlockingRendezvous {
                inner: gang.rendezvous,
                runtime,
            };
            (gang.role, rendezvous, gang.advertise_host)
        });
        std::fs::create_dir_all(&run.checkpoint_dir).map_err(|source| TrainError::Io {
            path: run.checkpoint_dir.clone(),
            source,
        })?;
        let job = TrainJob {
            spec: &spec,
            seed: run.seed,
            device: run.device,
            data_root: &run.data_root,
            output_dir: &output,
            checkpoint_dir: &run.checkpoint_dir,
            cancel: &thread_cancel,
            distributed: gang
                .as_ref()
                .map(|(role, rendezvous, host)| DistributedRole {
                    rank: role.rank as usize,
                    world_size: role.world_size as usize,
                    advertise_host: host,
                    rendezvous,
                }),
        };
        trainer.train(&job, &mut SenderSink(metrics))
    });
    let timeout = tokio::time::sleep(run.timeout);
    tokio::pin!(timeout);
    let mut stopped: Option<RunEnd> = None;
    let result = loop {
        tokio::select! {
            result = &mut training => break result,
            () = &mut timeout, if stopped.is_none() => {
                cancel.store(true, Ordering::Relaxed);
                stopped = Some(RunEnd::TimedOut);
            }
            changed = stop.changed(), if stopped.is_none() => {
                if changed.is_err() { continue; }
                if let Some(reason) = *stop.borrow() {
                    cancel.store(true, Ordering::Relaxed);
                    stopped = Some(RunEnd::Stopped(reason));
                }
            }
        }
    };
    match result {
        Ok(Ok(report)) => {
            tracing::info!(epochs = report.epochs_run, device = %report.device, "training finished");
            (RunEnd::Exited { code: 0 }, String::new())
        }
        Ok(Err(TrainError::Cancelled)) => (
            stopped.unwrap_or(RunEnd::Stopped(StopReason::Cancelled)),
            String::new(),
        ),
        Ok(Err(err @ TrainError::Distributed(_))) => (RunEnd::PeerLost, err.to_string()),
        Ok(Err(err)) => (RunEnd::Exited { code: 1 }, err.to_string()),
        Err(join_error) => (
            RunEnd::Exited { code: 1 },
            format!("the trainer thread failed: {join_error}"),
        ),
    }
}
