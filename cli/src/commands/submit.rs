//! `expcluster submit`: run stages and follow them with a live progress view.
//!
//! Stage order is a rule, not a habit (implementation → baselines → full →
//! ablations; each stage reads the idea as the previous one left it): a stage with
//! no completed earlier stage is refused unless `--force`d, and one that skips an
//! earlier stage runs with a warning naming it (see [`check_order`]). Ctrl-C never cancels a stage on a
//! remote coordinator: it detaches and says how to follow or cancel it.

use super::{CoordinatorArgs, WorkspaceArgs};
use crate::embedded::EmbeddedCluster;
use crate::output::jobs_table;
use crate::progress::StageProgress;
use crate::workspace_arg;
use anyhow::{bail, Context};
use clap::Args;
use expcluster_core::{ExperimentConfig, Stage};
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client, ClientClient};
use std::path::Path;
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
    /// Submit and return at once with the stage's run id (needs --coordinator).
    #[arg(long)]
    pub detach: bool,
    /// Run the stage even though an earlier stage of the config has not completed.
    #[arg(long)]
    pub force: bool,
    /// Open the second look of the stage's declared two-look design (`sequential:
    /// {max_seeds: N}` in the stage): run it on max_seeds (the seeds it already ran are
    /// reused) and judge its inconclusive claims again at the second look's level.
    #[arg(long)]
    pub seeds_for_power: bool,
    #[command(flatten)]
    pub local: LocalWorkersArgs,
    #[command(flatten)]
    pub dashboard: crate::dashboard_arg::DashboardArgs,
}

/// The embedded mode's workers (`submit`, `mcp`).
#[derive(Args, Debug, Clone, Copy)]
pub struct LocalWorkersArgs {
    /// Local workers in embedded mode.
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Slots per local worker in embedded mode (default: the number of CPU cores).
    #[arg(long)]
    pub slots: Option<u32>,
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let embedded = args.coordinator.coordinator.is_none();
    if embedded && args.detach {
        bail!("--detach needs a running coordinator: without --coordinator the jobs run inside this process, which must stay up; start one with `expcluster coordinator --workspace <dir>` and pass --coordinator host:port");
    }
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    );
    let root = match (root, embedded) {
        (Ok(root), _) => Some(root),
        (Err(err), true) => return Err(err),
        (Err(_), false) => None,
    };
    let ranks = match &root {
        Some(root) => check_config(root)?,
        None => 1,
    };
    let stages = stages_to_run(&args.stage, root.as_deref())?;
    if args.seeds_for_power && args.stage == "all" {
        bail!("--seeds-for-power opens the second look of one stage: pass --stage <stage>");
    }
    if args.seeds_for_power && args.rerun {
        bail!("--seeds-for-power adds seeds to the results the first look judged: it cannot rerun them (drop --rerun)");
    }
    if args.detach && stages.len() != 1 {
        bail!("--detach submits one stage (later stages need the earlier ones' results): pass --stage <stage>");
    }
    let cluster = if embedded {
        let root = root.as_deref().context("no workspace")?;
        let slots = local_slots(args.local.slots, args.local.workers, ranks)?;
        eprintln!(
            "starting an embedded coordinator and {} local worker(s) with {slots} slot(s) each",
            args.local.workers
        );
        let mut cluster = EmbeddedCluster::start(root, args.local.workers, slots).await?;
        if let Some(address) = args.dashboard.address(Some("127.0.0.1:0")) {
            cluster
                .serve_dashboard(&address, args.dashboard.dashboard_insecure_http)
                .await?;
        }
        Some(cluster)
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
        None => args.connect.security(
            expcluster_coordinator::service::auth::Role::Client,
            root.as_deref(),
        )?,
    };
    let mut client = client_client(channel(&address, &security)?, &security);
    let plan = Plan {
        flags: SubmitFlags {
            rerun: args.rerun,
            force: args.force,
            seeds_for_power: args.seeds_for_power,
        },
        detach: args.detach,
        embedded,
        address: address.clone(),
    };
    let result = run_stages(&mut client, &stages, &plan).await;
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(match result? {
        Ended::Done { failed: 0 } | Ended::Detached => ExitCode::SUCCESS,
        Ended::Done { .. } => ExitCode::from(1),
        Ended::Interrupted => ExitCode::from(130),
    })
}

struct Plan {
    flags: SubmitFlags,
    detach: bool,
    embedded: bool,
    address: String,
}

enum Ended {
    Done { failed: usize },
    Detached,
    Interrupted,
}

/// A config error stops `submit` before anything starts, with the file, line and
/// column the config loader names.
/// Checks the config; returns the ranks each job needs (`resources.data_parallel`).
pub fn check_config(root: &Path) -> anyhow::Result<u32> {
    let path = root.join("config.yaml");
    ExperimentConfig::load(&path)
        .map(|loaded| loaded.config.resources.data_parallel)
        .map_err(|err| {
            anyhow::anyhow!(
            "config error: {err}\nfix {} and check it with `expcluster validate --workspace {}`",
            path.display(),
            root.display()
        )
        })
}

/// Slots per local worker: `--slots`, else one per CPU core, and never fewer in all
/// than one data-parallel gang needs (its ranks share the cores; a gang that could
/// never be placed would wait forever).
pub fn local_slots(asked: Option<u32>, workers: u32, ranks: u32) -> anyhow::Result<u32> {
    let workers = workers.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    match asked {
        Some(slots) if slots * workers < ranks => bail!(
            "each job is a gang of {ranks} ranks (resources.data_parallel) but {workers} local worker(s) with {slots} slot(s) hold {}: pass --slots {}",
            slots * workers,
            ranks.div_ceil(workers)
        ),
        Some(slots) => Ok(slots),
        None => Ok(cores.max(ranks.div_ceil(workers))),
    }
}

fn stages_to_run(stage: &str, root: Option<&Path>) -> anyhow::Result<Vec<Stage>> {
    if stage != "all" {
        return Stage::parse(stage)
            .map(|stage| vec![stage])
            .map_err(anyhow::Error::msg);
    }
    let Some(root) = root else {
        return Ok(Stage::ALL.to_vec());
    };
    let loaded = ExperimentConfig::load(&root.join("config.yaml"))?;
    Ok(Stage::ALL
        .into_iter()
        .filter(|stage| expcluster_core::config::stage_is_defined(&loaded.config, *stage))
        .collect())
}

/// The stage-order rule: a stage after the first one the config defines needs
/// results from an earlier stage. With none of the earlier stages completed it is
/// refused (unless forced); with some completed but others skipped, it runs with a
/// warning that names them, returned here (iterating on ablations after the baselines
/// is common). A coordinator too old for ListStages is not checked.
pub async fn check_order(
    client: &mut ClientClient,
    stage: Stage,
    force: bool,
    address: &str,
) -> anyhow::Result<Option<String>> {
    let overview = match client.list_stages(v1::ListStagesRequest {}).await {
        Ok(overview) => overview.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
        Err(status) => return Err(crate::commands::status::explain(status, address)),
    };
    let earlier: Vec<&v1::StageOverview> = overview
        .stages
        .iter()
        .take_while(|s| s.stage != stage.as_str())
        .filter(|s| s.defined)
        .collect();
    let done = |s: &v1::StageOverview| s.completed_runs > 0 || s.finished;
    let missing: Vec<&str> = earlier
        .iter()
        .filter(|s| !done(s))
        .map(|s| s.stage.as_str())
        .collect();
    let Some(first) = missing.first() else {
        return Ok(None);
    };
    let none_done = earlier.iter().all(|s| !done(s));
    if !none_done || force {
        return Ok(Some(format!(
            "running {stage} before {} completed{}",
            missing.join(", "),
            if force { " (--force)" } else { "" }
        )));
    }
    bail!(
        "stage {stage} comes after {} in the protocol, and {} not completed in this workspace: run `expcluster submit --stage {first}` first (or `--stage all`), or pass --force to run {stage} anyway",
        missing.join(", "),
        if missing.len() == 1 { "it has" } else { "they have" }
    )
}

/// A stage handed to the coordinator.
pub struct Submitted {
    pub response: v1::SubmitStageResponse,
    /// The stage-order warning, if an earlier stage was skipped.
    pub warning: Option<String>,
}

/// How a stage is submitted.
#[derive(Debug, Clone, Copy)]
pub struct SubmitFlags {
    /// Run every job again.
    pub rerun: bool,
    /// Run even though an earlier stage has not completed.
    pub force: bool,
    /// Open the stage's declared second look.
    pub seeds_for_power: bool,
}

/// Checks the stage order, then submits `stage`; returns as soon as the coordinator
/// has queued its jobs (the stage runs on, whoever waits for it).
pub async fn submit_stage(
    client: &mut ClientClient,
    stage: Stage,
    flags: SubmitFlags,
    address: &str,
) -> anyhow::Result<Submitted> {
    let warning = check_order(client, stage, flags.force, address).await?;
    let response = client
        .submit_stage(v1::SubmitStageRequest {
            stage: stage.to_string(),
            rerun: flags.rerun,
            seeds_for_power: flags.seeds_for_power,
        })
        .await
        .map_err(|status| crate::commands::status::explain(status, address))?
        .into_inner();
    Ok(Submitted { response, warning })
}

/// Runs the stages in order.
async fn run_stages(
    client: &mut ClientClient,
    stages: &[Stage],
    plan: &Plan,
) -> anyhow::Result<Ended> {
    let mut failed = 0;
    for stage in stages {
        let Submitted {
            response: submitted,
            warning,
        } = submit_stage(client, *stage, plan.flags, &plan.address).await?;
        if let Some(warning) = warning {
            eprintln!("warning: {warning}");
        }
        if !submitted.note.is_empty() {
            println!("{}", submitted.note);
        }
        println!(
            "== stage {stage} (run {}): {} job(s), {} already done with the same code and config",
            submitted.stage_run_id, submitted.jobs_total, submitted.jobs_reused
        );
        if submitted.attached {
            println!("   (the stage was already running, e.g. resumed after a coordinator restart: following it)");
        }
        if plan.detach {
            println!(
                "detached: stage {stage} runs on the coordinator at {0}; follow it with `expcluster watch --stage {stage} --coordinator {0}`",
                plan.address
            );
            return Ok(Ended::Detached);
        }
        let status = tokio::select! {
            status = wait_for_stage(client, *stage, &plan.address) => status?,
            _ = tokio::signal::ctrl_c() => {
                say_interrupted(*stage, plan);
                return Ok(if plan.embedded { Ended::Interrupted } else { Ended::Detached });
            }
        };
        print!("{}", jobs_table(&status));
        for job in status
            .jobs
            .iter()
            .filter(|job| job.state == v1::JobState::Failed as i32)
        {
            failed += 1;
            println!(
                "-- {} failed after {} attempt(s): {}",
                job.job_id, job.attempt, job.error
            );
            for line in job
                .stderr_tail
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("   | {line}");
            }
            println!(
                "   full logs: `expcluster logs {} --stream stderr`",
                job.job_id
            );
        }
        print_outputs(&status.outputs);
    }
    Ok(Ended::Done { failed })
}

fn say_interrupted(stage: Stage, plan: &Plan) {
    if plan.embedded {
        eprintln!(
            "\ninterrupted: stopping the embedded coordinator and its local workers; finished jobs are kept, and `expcluster submit --stage {stage}` runs only what is missing"
        );
    } else {
        eprintln!(
            "\ndetached (Ctrl-C): stage {stage} keeps running on the coordinator at {0}; follow it with `expcluster watch --stage {stage} --coordinator {0}`, stop it with `expcluster cancel --stage {stage} --coordinator {0}`",
            plan.address
        );
    }
}

/// How long `submit` keeps waiting for a coordinator that stopped answering.
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(120);

async fn wait_for_stage(
    client: &mut ClientClient,
    stage: Stage,
    address: &str,
) -> anyhow::Result<v1::StageStatusResponse> {
    let mut progress = StageProgress::new(stage.as_str());
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let status = match client
            .stage_status(v1::StageStatusRequest {
                stage: stage.to_string(),
            })
            .await
        {
            Ok(status) => status.into_inner(),
            // A coordinator restarting resumes the stage from its journal: keep waiting.
            Err(status)
                if expcluster_worker::client::is_retryable(&status)
                    && unreachable_since
                        .get_or_insert_with(std::time::Instant::now)
                        .elapsed()
                        < COORDINATOR_PATIENCE =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(status) => {
                progress.clear();
                return Err(crate::commands::status::explain(status, address));
            }
        };
        unreachable_since = None;
        progress.update(&status);
        if status.finished {
            progress.finish();
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lists the summary files and figures and counts the arrays (a sweep writes dozens).
fn print_outputs(outputs: &[String]) {
    let arrays = outputs.iter().filter(|o| o.ends_with(".npy")).count();
    let others: Vec<&str> = outputs
        .iter()
        .filter(|o| !o.ends_with(".npy"))
        .map(String::as_str)
        .collect();
    if !outputs.is_empty() {
        println!(
            "wrote {arrays} array(s) under experiment_results/ and {}",
            others.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::local_slots;

    #[test]
    fn local_workers_get_enough_slots_for_one_gang() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert_eq!(local_slots(None, 1, 1).unwrap(), cores);
        assert_eq!(local_slots(None, 2, 64).unwrap(), cores.max(32));
        assert_eq!(local_slots(Some(3), 1, 2).unwrap(), 3);
        let err = local_slots(Some(1), 2, 4).unwrap_err().to_string();
        assert!(err.contains("pass --slots 2"), "{err}");
    }
}
