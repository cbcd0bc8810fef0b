//! `expcluster summarize --stage S`: recompute a stage's summary from the stored
//! per-job results (`experiment_results/job_results.jsonl`), with the
//! same code the coordinator runs, so an unchanged workspace gives an identical file.
//!
//! It writes the workspace directly, so it takes the workspace lock and refuses to run
//! while a coordinator serves the workspace.

use super::WorkspaceArgs;
use crate::workspace_arg;
use anyhow::Context;
use clap::Args;
use expcluster_coordinator::stage::summary::stored::recompute;
use expcluster_coordinator::store::workspace::Workspace;
use expcluster_coordinator::store::workspace_lock;
use expcluster_core::{ExperimentConfig, Stage};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// baselines, full, ablations, or all (every one of them that has run).
    #[arg(long)]
    pub stage: String,
}

pub fn run(args: SummarizeArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let stages: Vec<Stage> = if args.stage == "all" {
        Stage::ALL
            .into_iter()
            .filter(|stage| stage.summary_file().is_some())
            .collect()
    } else {
        vec![Stage::parse(&args.stage).map_err(anyhow::Error::msg)?]
    };
    let _lock = workspace_lock::acquire(&root, "expcluster summarize")?;
    let workspace =
        Workspace::open(&root).with_context(|| format!("cannot open {}", root.display()))?;
    let loaded = ExperimentConfig::load(&workspace.config_path())?;
    let all = args.stage == "all";
    let mut done = 0;
    for stage in stages {
        let result = match recompute(&workspace, &loaded, stage) {
            Ok(result) => result,
            // With `all`, stages that never ran are skipped, not errors.
            Err(expcluster_coordinator::stage::summary::stored::StoredError::NeverRan {
                ..
            }) if all => continue,
            Err(err) => return Err(err.into()),
        };
        let verdict = if result.unchanged {
            "identical to the stored file"
        } else {
            "written"
        };
        println!(
            "{}: recomputed from {} job(s) ({} failed): {verdict}",
            result.file, result.jobs, result.jobs_failed
        );
        done += 1;
    }
    if done == 0 {
        anyhow::bail!(
            "no stage with a summary has run yet: run `expcluster submit --stage baselines` first"
        );
    }
    Ok(ExitCode::SUCCESS)
}
