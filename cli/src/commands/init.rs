//! `expcluster init <idea>`: a new experiment workspace, ready to run.

use anyhow::{bail, Context};
use clap::Args;
use expcluster_core::ids::is_safe_name;
use std::path::PathBuf;
use std::process::ExitCode;

const CONFIG: &str = include_str!("../../templates/config.yaml");
const RUNFILE: &str = include_str!("../../templates/runfile.py");
const IDEA_MD: &str = include_str!("../../templates/idea.md");
const EVOLUTION_MD: &str = include_str!("../../templates/idea_evolution.md");

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The idea's name (letters, digits, `-`, `_`).
    pub idea: String,
    /// Where experiments live.
    #[arg(long, default_value = "experiments")]
    pub root: PathBuf,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    if !is_safe_name(&args.idea) || args.idea.contains('.') {
        bail!("{:?} cannot be an idea name: use letters, digits, `-` and `_`", args.idea);
    }
    let dir = args.root.join(&args.idea);
    if dir.exists() {
        bail!("{} already exists: expcluster never overwrites an idea; choose another name or remove it", dir.display());
    }
    let now = chrono::Utc::now();
    let fill = |text: &str| text.replace("{{IDEA}}", &args.idea).replace("{{DATE}}", &now.format("%Y-%m-%d").to_string());
    let idea_json = serde_json::json!({
        "title": args.idea,
        "version": 1,
        "created": now.to_rfc3339(),
        "last_updated": now.to_rfc3339(),
        "update_reason": "initial idea",
    });
    let staging = args.root.join(format!(".{}.init-{}", args.idea, std::process::id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let files: [(&str, String); 6] = [
        ("config.yaml", fill(CONFIG)),
        ("runfile.py", RUNFILE.to_owned()),
        ("idea.md", fill(IDEA_MD)),
        ("idea_evolution.md", fill(EVOLUTION_MD)),
        ("idea.json", serde_json::to_string_pretty(&idea_json)? + "\n"),
        ("research_log.jsonl", String::new()),
    ];
    for (name, content) in &files {
        std::fs::write(staging.join(name), content)?;
    }
    for folder in ["experiment_results", "figures", "logs"] {
        std::fs::create_dir_all(staging.join(folder))?;
    }
    // Created under a temporary name and renamed, so a half-made idea never appears.
    std::fs::rename(&staging, &dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!("created {}", dir.display());
    for (name, _) in &files {
        println!("  {name}");
    }
    println!("  experiment_results/  figures/  logs/");
    println!("next: edit idea.md and config.yaml, then `expcluster submit --idea {} --stage implementation`", args.idea);
    Ok(ExitCode::SUCCESS)
}
