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
use anyhow::Context;
use clap::{Args, Subcommand};
use expcluster_coordinator::stage::feedback::FileSink;
use expcluster_coordinator::stage::idea::{read_idea_json, version_of};
pub use expcluster_coordinator::stage::idea_update::{researcher_update, ResearcherUpdate};
use expcluster_coordinator::store::research_log::ResearchLog;
use expcluster_coordinator::store::workspace::Workspace;
use expcluster_coordinator::store::workspace_lock;
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
    let reason = checked_reason(&args.reason)?;
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
    let (log, _) = ResearchLog::open(&workspace.research_log_path(), false)?;
    let what_changed = match &args.from {
        Some(file) => format!("idea.md replaced by {} (diff below).", file.display()),
        None => "idea.md as edited in place (diff below, against the previous version's snapshot)."
            .to_owned(),
    };
    let mut sink = FileSink {
        workspace: workspace.clone(),
        log,
    };
    let applied = researcher_update(
        &workspace,
        &mut sink,
        ResearcherUpdate {
            reason,
            source: "researcher (`expcluster idea update`)".to_owned(),
            new_idea_md,
            what_changed,
        },
    )?;
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

/// The reason, trimmed; an empty one is refused (it is the record future readers
/// rely on).
pub fn checked_reason(reason: &str) -> anyhow::Result<String> {
    expcluster_coordinator::stage::idea_update::checked_reason(reason).map_err(anyhow::Error::msg)
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
    let history = history(&root)?;
    let mut rows = vec![vec![
        "version".to_owned(),
        "time".into(),
        "event".into(),
        "source".into(),
        "reason".into(),
    ]];
    for version in &history.versions {
        rows.push(vec![
            version.version.to_string(),
            version.time.clone(),
            version
                .event
                .map_or_else(|| "-".to_owned(), |seq| format!("#{seq}")),
            version.source.clone(),
            version.reason.clone(),
        ]);
    }
    print!("{}", render(&rows));
    println!("current version: {}", history.current_version);
    if args.diff {
        for version in &history.versions {
            if let Some(diff) = &version.diff {
                println!("\nversion {}:", version.version);
                print!("{}", changed_lines(diff));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every version of the idea.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct IdeaHistory {
    /// idea.json's version.
    pub current_version: u32,
    /// Version 1, then one entry per `idea_updated` event, in order.
    pub versions: Vec<IdeaVersion>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct IdeaVersion {
    pub version: u64,
    pub time: String,
    /// The `idea_updated` event's `seq` in research_log.jsonl (none for version 1).
    pub event: Option<u64>,
    pub source: String,
    pub reason: String,
    /// The unified diff of idea.md, when it was recorded.
    pub diff: Option<String>,
}

/// The idea's versions from idea.json and the research log's `idea_updated` events.
pub fn history(root: &std::path::Path) -> anyhow::Result<IdeaHistory> {
    let workspace =
        Workspace::open(root).with_context(|| format!("cannot open {}", root.display()))?;
    let idea = read_idea_json(&workspace);
    let text = std::fs::read_to_string(workspace.research_log_path()).unwrap_or_default();
    let field = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    let mut versions = vec![IdeaVersion {
        version: 1,
        time: field(idea.get("created").unwrap_or(&Value::Null)),
        event: None,
        source: "initial".into(),
        reason: "initial idea".into(),
        diff: None,
    }];
    for event in text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "idea_updated")
    {
        versions.push(IdeaVersion {
            version: event["to_version"].as_u64().unwrap_or_default(),
            time: field(&event["time"]),
            event: event["seq"].as_u64(),
            source: field(&event["source"]),
            reason: field(&event["reason"]),
            diff: event["diff"].as_str().map(str::to_owned),
        });
    }
    Ok(IdeaHistory {
        current_version: version_of(&idea),
        versions,
    })
}
