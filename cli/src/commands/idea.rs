//! `expcluster idea update` and `expcluster idea log`: a researcher's own changes to
//! the idea, through the same protocol the coordinator runs when a claim is
//! contradicted (version bump, `idea_evolution.md` entry with the diff, `idea_updated`
//! event), and the history of every version.
//!
//! `update` writes the workspace directly, so it takes the workspace lock and refuses
//! to run while a coordinator serves the workspace; `log` only reads.

use super::WorkspaceArgs;
use crate::output::render;
use crate::workspace_arg;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use expcluster_coordinator::feedback::{apply_update, FileSink, IdeaUpdate};
use expcluster_coordinator::idea::{read_idea_json, version_of};
use expcluster_coordinator::research_log::ResearchLog;
use expcluster_coordinator::workspace::Workspace;
use expcluster_coordinator::workspace_lock;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct IdeaArgs {
    #[command(subcommand)]
    pub action: IdeaAction,
}

#[derive(Subcommand, Debug)]
pub enum IdeaAction {
    /// Record a new version of the idea: idea.md as edited in place, or replaced by
    /// --from FILE; bumps idea.json's version and logs why, with the diff.
    #[command(
        after_help = "Examples:\n  $EDITOR experiments/x/idea.md && expcluster idea update --idea x --reason \"narrow the claim to small data\"\n  expcluster idea update --idea x --reason \"pivot to mixup\" --from new_idea.md"
    )]
    Update(UpdateArgs),
    /// Show every version of the idea: when, by whom, why.
    #[command(after_help = "Example:\n  expcluster idea log --idea x --diff")]
    Log(LogArgs),
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Why the idea changes (recorded in idea.json, idea_evolution.md and the log).
    #[arg(long)]
    pub reason: String,
    /// The new idea.md (default: idea.md as it is now, edited in place).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Also print each version's diff of idea.md.
    #[arg(long)]
    pub diff: bool,
}

pub fn run(args: IdeaArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        IdeaAction::Update(args) => update(args),
        IdeaAction::Log(args) => log(args),
    }
}

fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let reason = args.reason.trim().to_owned();
    if reason.is_empty() {
        bail!(
            "--reason is empty: say why the idea changes (it is the record future readers rely on)"
        );
    }
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let new_idea_md = match &args.from {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        ),
        None => None,
    };
    let _lock = workspace_lock::acquire(&root, "expcluster idea update")?;
    let workspace =
        Workspace::open(&root).with_context(|| format!("cannot open {}", root.display()))?;
    let next = version_of(&read_idea_json(&workspace)) + 1;
    let (log, _) = ResearchLog::open(&workspace.research_log_path(), false)?;
    let what_changed = match &args.from {
        Some(file) => format!("idea.md replaced by {} (diff below).", file.display()),
        None => "idea.md as edited in place (diff below, against the previous version's snapshot)."
            .to_owned(),
    };
    let update = IdeaUpdate {
        reason,
        source: "researcher (`expcluster idea update`)".to_owned(),
        new_idea_md,
        what_changed: vec![what_changed],
        impact: format!("stages submitted from now on run against version {next}."),
        ..IdeaUpdate::default()
    };
    let mut sink = FileSink {
        workspace: workspace.clone(),
        log,
    };
    let applied = apply_update(&workspace, &mut sink, update)?;
    println!(
        "idea updated: version {} → {} (research_log.jsonl event #{}; entry added to idea_evolution.md)",
        applied.from_version, applied.to_version, applied.event_seq
    );
    match applied.diff {
        Some(diff) if diff.lines().any(|l| l.starts_with(['+', '-'])) => {
            print!("{}", changed_lines(&diff))
        }
        Some(_) => println!("idea.md unchanged"),
        None => println!(
            "no snapshot of version {} to diff against: the diff was not recorded",
            applied.from_version
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The `+`/`-` lines of a diff, for the terminal.
fn changed_lines(diff: &str) -> String {
    diff.lines()
        .filter(|l| l.starts_with(['+', '-']))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn log(args: LogArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let workspace =
        Workspace::open(&root).with_context(|| format!("cannot open {}", root.display()))?;
    let idea = read_idea_json(&workspace);
    let text = std::fs::read_to_string(workspace.research_log_path()).unwrap_or_default();
    let updates: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "idea_updated")
        .collect();
    let field = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    let mut rows = vec![vec![
        "version".to_owned(),
        "time".into(),
        "event".into(),
        "source".into(),
        "reason".into(),
    ]];
    rows.push(vec![
        "1".into(),
        field(idea.get("created").unwrap_or(&Value::Null)),
        "-".into(),
        "initial".into(),
        "initial idea".into(),
    ]);
    for event in &updates {
        rows.push(vec![
            field(&event["to_version"]),
            field(&event["time"]),
            format!("#{}", field(&event["seq"])),
            field(&event["source"]),
            field(&event["reason"]),
        ]);
    }
    print!("{}", render(&rows));
    println!("current version: {}", version_of(&idea));
    if args.diff {
        for event in &updates {
            if let Some(diff) = event["diff"].as_str() {
                println!("\nversion {}:", field(&event["to_version"]));
                print!("{}", changed_lines(diff));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
