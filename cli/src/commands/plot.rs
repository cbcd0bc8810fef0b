//! `expcluster plot`: (re)draw the workspace's figures from its result files.

use super::WorkspaceArgs;
use crate::workspace_arg;
use clap::Args;
use expcluster_core::Stage;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PlotArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Only this stage (default: every stage with results).
    #[arg(long)]
    pub stage: Option<String>,
    /// Print the written files as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlotArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let written = match &args.stage {
        Some(stage) => expcluster_figures::write_stage_figures(
            &root,
            Stage::parse(stage).map_err(anyhow::Error::msg)?,
        )?,
        None => expcluster_figures::write_all_figures(&root)?,
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"figures": written, "width": expcluster_figures::WIDTH, "height": expcluster_figures::HEIGHT})
        );
    } else if written.is_empty() {
        println!("no figures: no stage has results yet (run `expcluster submit` first)");
    } else {
        for file in &written {
            println!("{}", root.join(file).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
