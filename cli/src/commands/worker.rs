//! `expcluster worker`: lease and run jobs.

use super::CoordinatorArgs;
use anyhow::Context;
use clap::Args;
use expcluster_worker::{run_worker, WorkerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Job slots (CPU); defaults to the number of GPUs, else 1.
    #[arg(long)]
    pub slots: Option<u32>,
    /// GPU indices to use, one slot each (e.g. 0,1); defaults to CUDA_VISIBLE_DEVICES.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<String>,
    /// Jobs that may share each GPU (8 small jobs on one H200 gave about 5x the steps/s of one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub slots_per_gpu: u32,
    /// Scratch folder for job directories and checkpoints. A worker started again with
    /// the same folder (after kill -9 or a crash) carries on the command jobs the last
    /// one left running; the default is a fresh folder per process.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Host name or IP the other ranks of a data-parallel job reach this worker at
    /// (MASTER_ADDR when it runs rank 0); defaults to this machine's host name.
    #[arg(long, env = "EXPCLUSTER_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// The folder that stands in for the workspace when trainer jobs read their
    /// datasets on this node: with `--data-root /scratch/my-idea`, `data/digits.npz`
    /// is read from `/scratch/my-idea/data/digits.npz`. For nodes that do not share a
    /// filesystem with the coordinator; by default the workspace's own path is used.
    #[arg(long, env = "EXPCLUSTER_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let coordinator = args.coordinator.coordinator.context(
        "no coordinator given: pass --coordinator host:port or set EXPCLUSTER_COORDINATOR",
    )?;
    // Under Slurm the task's GPUs, scratch folder and incarnation come from SLURM_*.
    let slurm = expcluster_worker::slurm_env::SlurmTask::from_env();
    let gpus = match (args.gpus.is_empty(), &slurm) {
        (false, _) => args.gpus,
        (true, Some(task)) => task.gpus.clone(),
        (true, None) => gpus_from_env(),
    };
    // One slot per (GPU, share): each slot's jobs see only their GPU.
    let gpus: Vec<String> = gpus
        .iter()
        .flat_map(|gpu| std::iter::repeat_n(gpu.clone(), args.slots_per_gpu as usize))
        .collect();
    let slots = args.slots.unwrap_or(if gpus.is_empty() {
        1
    } else {
        gpus.len() as u32
    });
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let default_dir = match &slurm {
        Some(task) => task.work_dir_name(),
        None => format!("expcluster-worker-{}", std::process::id()),
    };
    let work_dir = args
        .work_dir
        .unwrap_or_else(|| std::env::temp_dir().join(default_dir));
    let security = args
        .connect
        .security(expcluster_coordinator::service::auth::Role::Worker, None)?;
    let incarnation_hint = slurm
        .as_ref()
        .map(|task| task.incarnation_hint())
        .unwrap_or_default();
    let advertise_host = args.advertise_host.unwrap_or_else(|| hostname.clone());
    let config = WorkerConfig {
        coordinator,
        slots,
        work_dir,
        advertise_host,
        data_root: args
            .data_root
            .map(|root| {
                std::fs::canonicalize(&root).with_context(|| {
                    format!(
                        "--data-root {}: no such folder on this node",
                        root.display()
                    )
                })
            })
            .transpose()?,
        hostname,
        gpus,
        incarnation_hint,
        security,
    };
    run_worker(
        config,
        Arc::new(expcluster_trainer::TchTrainer),
        crate::embedded::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn gpus_from_env() -> Vec<String> {
    std::env::var("CUDA_VISIBLE_DEVICES")
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
