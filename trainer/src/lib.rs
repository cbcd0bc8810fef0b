//! The built-in tch (libtorch) trainer that expcluster workers run for `job.trainer`.
//!
//! A job is a validated [`TrainerSpec`] plus a seed, a device and three directories
//! (data, results, checkpoints). [`TchTrainer`] loads or generates the data, builds the
//! model, trains it, emits metrics through a [`MetricSink`] as they happen, writes the
//! per-epoch results as float64 `.npy` files, and checkpoints so that a requeued
//! attempt resumes where the last one stopped.
//!
//! Design choices and their trade-offs:
//! - **Determinism.** On CPU the same seed gives bit-identical results. Data
//!   generation, shuffling, weight initialisation and dropout masks use the trainer's
//!   own seeded RNG, the masks seeded per (seed, epoch, step, rank) so a resumed run
//!   replays exactly, and jobs training side by side in one process do not disturb
//!   each other. On CUDA dropout draws from libtorch's process-wide generator,
//!   reseeded every step (no bit-reproducibility is promised there). `threads` sets
//!   libtorch's intra-op threads, process-wide.
//! - **Optimizers** (SGD, Adam, AdamW) keep their buffers here rather than in tch's
//!   optimizers, which cannot export their state; ours checkpoint their moment
//!   buffers, so resuming is exact. The updates run libtorch's fused kernels, which
//!   tch does not bind, through a little C++ (`csrc/`, [`native`]); so does the fp32
//!   CPU linear layer, on oneDNN's matmul.
//! - **Checkpoints** are directories written under a temporary name, fsynced and
//!   renamed: a crash leaves either the old checkpoint or the new one.
//! - **bf16** is AMP-style (fp32 master weights, bf16 casts inside the forward, loss in
//!   fp32); **bf16_pure** stores weights, gradients and optimizer state in bf16 too.
//!   Both run on CUDA and on the CPU (oneDNN's bf16 kernels), so a CPU test run has
//!   the GPU's numerics; docs/config.md gives the accuracy trade-off.

mod checkpoint;
mod data;
pub mod distributed;
mod heap;
mod metrics;
mod models;
mod native;
mod npy;
mod optim;
mod rng;
mod schedule;
mod train_loop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use distributed::{DistributedRole, Rendezvous};
pub use expcluster_core::trainer_spec::TrainerSpec;

/// Runs one training job. Behind a trait so schedulers and workers can be tested
/// without libtorch.
pub trait Trainer: Send + Sync {
    fn train(
        &self,
        job: &TrainJob<'_>,
        sink: &mut dyn MetricSink,
    ) -> Result<TrainReport, TrainError>;
}

/// The libtorch trainer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TchTrainer;

impl Trainer for TchTrainer {
    fn train(
        &self,
        job: &TrainJob<'_>,
        sink: &mut dyn MetricSink,
    ) -> Result<TrainReport, TrainError> {
        // tch turns libtorch exceptions in its non-`f_` methods into panics; a bad
        // tensor shape from user data must fail the job, not the worker.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train_loop::run(job, sink)));
        match outcome {
            Ok(result) => result,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(TrainError::Torch(message))
            }
        }
    }
}

/// Everything one job needs.
pub struct TrainJob<'a> {
    pub spec: &'a TrainerSpec,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Relative dataset paths resolve here.
    pub data_root: &'a Path,
    /// The `.npy` results are written here.
    pub output_dir: &'a Path,
    /// The job resumes from the latest checkpoint here, if any.
    pub checkpoint_dir: &'a Path,
    /// Checked every step; when set, the trainer checkpoints and returns
    /// [`TrainError::Cancelled`].
    pub cancel: &'a AtomicBool,
    /// `Some` when this process is one rank of a data-parallel gang.
    pub distributed: Option<DistributedRole<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

/// Receives metrics as they are produced: each call is the next point of that
/// metric's series (per epoch; per N steps as `step_*` when `eval_every_steps` > 0).
pub trait MetricSink {
    fn emit(&mut self, name: &str, value: f64);
}

/// What a finished (or early-stopped) job reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub epochs_run: usize,
    /// Completed epochs found in the checkpoint this attempt resumed from.
    pub resumed_from_epoch: Option<usize>,
    /// The last epoch's value of every metric.
    pub final_metrics: BTreeMap<String, f64>,
    /// Where it ran, e.g. `cpu` or `cuda:0`.
    pub device: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid trainer spec: {0}")]
    InvalidSpec(String),
    #[error("dataset: {0}")]
    Data(String),
    #[error("device: {0}")]
    Device(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("libtorch: {0}")]
    Torch(String),
    /// The cancel flag was set; a checkpoint was written first.
    #[error("cancelled (a checkpoint was saved)")]
    Cancelled,
    /// A peer of a data-parallel gang failed, hung or could not be reached; running
    /// the whole gang again may succeed.
    #[error("data-parallel: {0}")]
    Distributed(String),
}

impl From<tch::TchError> for TrainError {
    fn from(err: tch::TchError) -> Self {
        TrainError::Torch(err.to_string())
    }
}

impl TrainError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
        move |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether running the same job again may succeed (an I/O or device hiccup), as
    /// opposed to a spec or data error that will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            TrainError::Io { .. }
            | TrainError::Device(_)
            | TrainError::Cancelled
            | TrainError::Distributed(_) => true,
            TrainError::InvalidSpec(_)
            | TrainError::Data(_)
            | TrainError::Checkpoint(_)
            | TrainError::Torch(_) => false,
        }
    }
}
