//! `expcluster validate`: check the config and print the job matrix.

use super::WorkspaceArgs;
use crate::output::render;
use crate::workspace_arg;
use clap::Args;
use expcluster_core::expand::{expand_stage, StageRequest};
use expcluster_core::{ExperimentConfig, Stage};
use indexmap::IndexMap;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(args.workspace.workspace.as_deref(), args.workspace.idea.as_deref())?;
    let loaded = match ExperimentConfig::load(&root.join("config.yaml")) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let code = expcluster_coordinator::code_files::read_code_files(&root)?;
    println!("{}: valid; proposed method `{}`, primary metric {} ({:?})", loaded.config.name, loaded.config.proposed_method(), loaded.config.primary_metric.name, loaded.config.primary_metric.goal);
    let mut rows = vec![vec!["stage".to_owned(), "method".into(), "sweep points".into(), "seeds".into(), "jobs".into()]];
    let mut total = 0;
    for stage in Stage::ALL {
        let Ok(jobs) = expand_stage(&loaded, StageRequest { stage, code_digest: &code.digest }) else {
            continue;
        };
        let mut per_variant: IndexMap<String, (Vec<String>, Vec<u64>, usize)> = IndexMap::new();
        for job in &jobs {
            let entry = per_variant.entry(job.variant.clone()).or_default();
            let label = job.sweep_label();
            if !entry.0.contains(&label) {
                entry.0.push(label);
            }
            if !entry.1.contains(&job.seed) {
                entry.1.push(job.seed);
            }
            entry.2 += 1;
        }
        for (variant, (points, seeds, count)) in per_variant {
            rows.push(vec![stage.to_string(), variant, points.len().to_string(), seeds.len().to_string(), count.to_string()]);
        }
        total += jobs.len();
    }
    print!("{}", render(&rows));
    println!("{total} job(s) in all");
    Ok(ExitCode::SUCCESS)
}
