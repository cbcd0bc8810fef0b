//! `expcluster submit`: run stages and wait for them, printing progress and metrics.

use super::{CoordinatorArgs, WorkspaceArgs};
use crate::embedded::EmbeddedCluster;
use crate::output::jobs_table;
use crate::workspace_arg;
use anyhow::{bail, Context};
use clap::Args;
use expcluster_core::{ExperimentConfig, Stage};
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client, ClientClient};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// implementation, baselines, full, ablations, or all (the stages the config defines, in order).
    #[arg(long, default_value = "all")]
    pub stage: String,
    /// Run every job again, even those with a result for the same code and config.
    #[arg(long)]
    pub rerun: bool,
    /// Local workers in embedded mode.
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Slots per local worker in embedded mode (default: the number of CPU cores).
    #[arg(long)]
    pub slots: Option<u32>,
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let embedded = args.coordinator.coordinator.is_none();
    let root = workspace_arg::resolve(args.workspace.workspace.as_deref(), args.workspace.idea.as_deref());
    let root = match (root, embedded) {
        (Ok(root), _) => Some(root),
        (Err(err), true) => return Err(err),
        (Err(_), false) => None,
    };
    let stages = stages_to_run(&args.stage, root.as_deref())?;
    let cluster = if embedded {
        let root = root.as_deref().context("no workspace")?;
        let slots = args.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        eprintln!("starting an embedded coordinator and {} local worker(s) with {slots} slot(s) each", args.workers);
        Some(EmbeddedCluster::start(root, args.workers, slots).await?)
    } else {
        None
    };
    let address = match (&cluster, &args.coordinator.coordinator) {
        (Some(cluster), _) => cluster.address.clone(),
        (None, Some(address)) => address.clone(),
        (None, None) => bail!("no coordinator"),
    };
    let security = match &cluster {
        Some(cluster) => cluster.client_security.clone(),
        None => args.connect.security(expcluster_coordinator::auth::Role::Client, root.as_deref())?,
    };
    let mut client = client_client(channel(&address, &security)?, &security);
    let result = run_stages(&mut client, &stages, args.rerun, &address).await;
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    let failed = result?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn stages_to_run(stage: &str, root: Option<&std::path::Path>) -> anyhow::Result<Vec<Stage>> {
    if stage != "all" {
        return Stage::parse(stage).map(|stage| vec![stage]).map_err(anyhow::Error::msg);
    }
    let Some(root) = root else {
        return Ok(Stage::ALL.to_vec());
    };
    let loaded = ExperimentConfig::load(&root.join("config.yaml"))?;
    let stages = &loaded.config.stages;
    Ok(Stage::ALL
        .into_iter()
        .filter(|stage| match stage {
            Stage::Implementation => stages.implementation.is_some(),
            Stage::Baselines => stages.baselines.is_some(),
            Stage::Full => stages.full.is_some(),
            Stage::Ablations => stages.ablations.is_some(),
        })
        .collect())
}

/// Runs the stages in order; returns the number of failed jobs.
async fn run_stages(client: &mut ClientClient, stages: &[Stage], rerun: bool, address: &str) -> anyhow::Result<usize> {
    let mut failed = 0;
    for stage in stages {
        let submitted = client
            .submit_stage(v1::SubmitStageRequest { stage: stage.to_string(), rerun })
            .await
            .map_err(|status| crate::commands::status::explain(status, address))?
            .into_inner();
        println!(
            "== stage {stage}: {} job(s), {} already done with the same code and config",
            submitted.jobs_total, submitted.jobs_reused
        );
        if submitted.attached {
            println!("   (the stage was already running, e.g. resumed after a coordinator restart: following it)");
        }
        let status = wait_for_stage(client, *stage, address).await?;
        print!("{}", jobs_table(&status));
        for job in status.jobs.iter().filter(|job| job.state == v1::JobState::Failed as i32) {
            failed += 1;
            println!("-- {} failed after {} attempt(s): {}", job.job_id, job.attempt, job.error);
            for line in job.stderr_tail.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev() {
                println!("   | {line}");
            }
        }
        print_outputs(&status.outputs);
    }
    Ok(failed)
}

/// How long `submit` keeps waiting for a coordinator that stopped answering.
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(120);

async fn wait_for_stage(client: &mut ClientClient, stage: Stage, address: &str) -> anyhow::Result<v1::StageStatusResponse> {
    let mut last_line = String::new();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let status = match client.stage_status(v1::StageStatusRequest { stage: stage.to_string() }).await {
            Ok(status) => status.into_inner(),
            // A coordinator restarting resumes the stage from its journal: keep waiting.
            Err(status) if expcluster_worker::client::is_retryable(&status) && unreachable_since.get_or_insert_with(std::time::Instant::now).elapsed() < COORDINATOR_PATIENCE => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(status) => return Err(crate::commands::status::explain(status, address)),
        };
        unreachable_since = None;
        let count = |state: v1::JobState| status.jobs.iter().filter(|job| job.state == state as i32).count();
        let line = format!(
            "[{stage}] {} done, {} failed, {} running, {} queued (of {})",
            count(v1::JobState::Succeeded),
            count(v1::JobState::Failed),
            count(v1::JobState::Running),
            count(v1::JobState::Queued),
            status.jobs.len()
        );
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if status.finished {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lists the summary files and counts the arrays (a sweep writes dozens).
fn print_outputs(outputs: &[String]) {
    let arrays = outputs.iter().filter(|o| o.ends_with(".npy")).count();
    let others: Vec<&str> = outputs.iter().filter(|o| !o.ends_with(".npy")).map(String::as_str).collect();
    if !outputs.is_empty() {
        println!("wrote {arrays} array(s) under experiment_results/ and {}", others.join(", "));
    }
}
