//! `expcluster slurm launch|stop`: start coordinator and workers as Slurm jobs, and
//! cancel them again.
//!
//! The batch scripts are the ones in `deploy/slurm/`, compiled into the binary so the
//! script and the binary it runs always match. `launch` writes the script into the
//! workspace (`.expcluster/slurm/`, next to the jobs' logs), submits it with `sbatch`
//! and appends the Slurm job id to `.expcluster/slurm_jobs`; `stop` cancels every job
//! listed there. Without `--coordinator` the allocation runs its own coordinator on the
//! first node; with it, a worker array joins that coordinator.

use super::WorkspaceArgs;
use crate::workspace_arg;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const CLUSTER_SCRIPT: &str = include_str!("../../../deploy/slurm/expcluster-cluster.sbatch");
const WORKERS_SCRIPT: &str = include_str!("../../../deploy/slurm/expcluster-workers.sbatch");
/// The launched job ids, one a line: `<job id> <cluster|workers>`.
const JOBS_FILE: &str = ".expcluster/slurm_jobs";

#[derive(Subcommand, Debug)]
pub enum SlurmCommand {
    /// Submit a coordinator and one worker per node (or, with --coordinator, a worker
    /// array joining it) and print the Slurm job id.
    Launch(LaunchArgs),
    /// Cancel every Slurm job `launch` started for this workspace.
    Stop(StopArgs),
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    #[command(subcommand)]
    pub command: SlurmCommand,
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Nodes: one worker each (the coordinator shares the first one).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// GPUs per node, one job slot each (0: CPU slots, see --slots).
    #[arg(long, default_value_t = 0)]
    pub gpus_per_node: u32,
    /// CPU slots per worker when --gpus-per-node is 0.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Slurm partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit, in any form sbatch takes (e.g. 12:00:00, 2-00:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Join this running coordinator (host:port) with a worker array instead of
    /// starting a coordinator in the allocation.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// The worker token (default: the workspace's .expcluster/worker.token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The coordinator's port in the allocation (default: any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds of warning (SIGUSR2) before the time limit, to drain and requeue.
    #[arg(long, default_value_t = 120)]
    pub grace: u32,
    /// More sbatch flags, passed as they are (e.g. --sbatch-arg=--account=lab).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

pub fn run(args: SlurmArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SlurmCommand::Launch(args) => launch(args),
        SlurmCommand::Stop(args) => stop(args),
    }
}

fn launch(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let root = std::fs::canonicalize(&root)
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    let slurm_dir = root.join(".expcluster").join("slurm");
    std::fs::create_dir_all(&slurm_dir)
        .with_context(|| format!("cannot create {}", slurm_dir.display()))?;
    let (kind, script) = if args.coordinator.is_some() {
        ("workers", WORKERS_SCRIPT)
    } else {
        ("cluster", CLUSTER_SCRIPT)
    };
    let script_path = slurm_dir.join(format!("expcluster-{kind}.sbatch"));
    std::fs::write(&script_path, script)
        .with_context(|| format!("cannot write {}", script_path.display()))?;

    let binary = std::env::current_exe().context("cannot find this expcluster binary")?;
    let mut sbatch = Command::new("sbatch");
    sbatch
        .arg("--parsable")
        .arg(format!("--signal=B:USR2@{}", args.grace))
        .arg("--requeue");
    if let Some(partition) = &args.partition {
        sbatch.arg(format!("--partition={partition}"));
    }
    if let Some(time) = &args.time {
        sbatch.arg(format!("--time={time}"));
    }
    if args.gpus_per_node > 0 {
        sbatch.arg(format!("--gpus-per-node={}", args.gpus_per_node));
    }
    match &args.coordinator {
        None => {
            sbatch
                .arg(format!("--nodes={}", args.nodes))
                .arg("--ntasks-per-node=1");
            sbatch.arg(format!(
                "--output={}",
                slurm_dir.join("expcluster-%j.out").display()
            ));
            sbatch.env("EXPCLUSTER_PORT", args.port.unwrap_or(0).to_string());
            sbatch.env_remove("EXPCLUSTER_COORDINATOR");
        }
        Some(address) => {
            sbatch.arg(format!("--array=0-{}", args.nodes - 1));
            sbatch.arg(format!(
                "--output={}",
                slurm_dir.join("expcluster-worker-%A_%a.out").display()
            ));
            sbatch.env("EXPCLUSTER_COORDINATOR", address);
        }
    }
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| root.join(".expcluster").join("worker.token"));
    sbatch
        .args(&args.sbatch_args)
        .arg(&script_path)
        .env("EXPCLUSTER_WORKSPACE", &root)
        .env("EXPCLUSTER_BIN", &binary)
        .env("EXPCLUSTER_TOKEN_FILE", &token_file)
        .env("EXPCLUSTER_SLOTS", args.slots.to_string());
    let output = sbatch
        .output()
        .context("cannot run sbatch: is Slurm installed here? (deploy/slurm/local-cluster.sh up starts a local one)")?;
    if !output.status.success() {
        bail!(
            "sbatch refused the job: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // --parsable prints "<job id>" or "<job id>;<cluster>".
    let job_id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch answered {stdout:?}, not a job id");
    }
    record_job(&root, &job_id, kind)?;
    println!("{job_id}");
    if args.coordinator.is_none() {
        eprintln!(
            "submitted Slurm job {job_id}: a coordinator and {} worker(s); once it runs, its address is in {}",
            args.nodes,
            root.join(".expcluster").join("slurm_coordinator").display()
        );
    } else {
        eprintln!(
            "submitted Slurm array job {job_id}: {} worker(s); `expcluster workers` shows them joining",
            args.nodes
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn record_job(root: &Path, job_id: &str, kind: &str) -> anyhow::Result<()> {
    let path = root.join(JOBS_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(file, "{job_id} {kind}")
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_data()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let path = root.join(JOBS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "no Slurm jobs launched for {} (nothing in {})",
                root.display(),
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let job_ids = parse_jobs(&text);
    if job_ids.is_empty() {
        eprintln!("no Slurm jobs listed in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // scancel sends SIGTERM: the workers drain and report their jobs PREEMPTED.
    let status = Command::new("scancel")
        .args(&job_ids)
        .status()
        .context("cannot run scancel: is Slurm installed here?")?;
    if !status.success() {
        bail!(
            "scancel failed for jobs {}; check them with `squeue`",
            job_ids.join(" ")
        );
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("cancelled Slurm job(s) {}", job_ids.join(" "));
    Ok(ExitCode::SUCCESS)
}

/// The job ids of the jobs file; lines that do not start with a job id are skipped
/// (the file is ours, but a hand edit must not pass garbage to scancel).
fn parse_jobs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_jobs;

    #[test]
    fn jobs_file_lines_give_job_ids_and_garbage_is_skipped() {
        assert_eq!(
            parse_jobs("12 cluster\n13 workers\n\n--all x\n14\n"),
            vec!["12", "13", "14"]
        );
    }

    #[test]
    fn the_embedded_scripts_use_usr2_and_requeue() {
        for script in [super::CLUSTER_SCRIPT, super::WORKERS_SCRIPT] {
            assert!(script.contains("#SBATCH --signal=B:USR2@"));
            assert!(script.contains("#SBATCH --requeue"));
            assert!(!script.contains("USR1@"), "USR1 belongs to NCCL");
        }
    }
}
