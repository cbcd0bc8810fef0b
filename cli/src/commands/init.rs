//! `expcluster init <idea>`: a new experiment workspace, ready to run.
//!
//! It creates everything of the seed's final layout that exists before a run, and
//! nothing else: idea.md, idea.json (version 1), idea_evolution.md, an empty
//! research_log.jsonl, a commented config.yaml showing every option, a runfile.py
//! that runs as is, and the folders a run fills. It never overwrites an idea.

use anyhow::{bail, Context};
use clap::Args;
use expcluster_core::ids::is_safe_name;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const CONFIG: &str = include_str!("../../templates/config.yaml");
const RUNFILE: &str = include_str!("../../templates/runfile.py");
const IDEA_MD: &str = include_str!("../../templates/idea.md");
const EVOLUTION_MD: &str = include_str!("../../templates/idea_evolution.md");

/// The folders a run fills, created empty.
const FOLDERS: [&str; 3] = ["experiment_results", "figures", "logs"];

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The idea's name (letters, digits, `-`, `_`).
    pub idea: String,
    /// Where experiments live.
    #[arg(long, default_value = "experiments")]
    pub root: PathBuf,
}

/// The files of a new idea, as (name, content).
fn idea_files(
    idea: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let fill = |text: &str| {
        text.replace("{{IDEA}}", idea)
            .replace("{{DATE}}", &now.format("%Y-%m-%d").to_string())
    };
    let idea_json = serde_json::json!({
        "title": idea,
        "version": 1,
        "created": now.to_rfc3339(),
        "last_updated": now.to_rfc3339(),
        "update_reason": "initial idea",
    });
    Ok(vec![
        ("idea.md", fill(IDEA_MD)),
        (
            "idea.json",
            serde_json::to_string_pretty(&idea_json)? + "\n",
        ),
        ("idea_evolution.md", fill(EVOLUTION_MD)),
        ("config.yaml", fill(CONFIG)),
        ("runfile.py", RUNFILE.to_owned()),
        ("research_log.jsonl", String::new()),
    ])
}

/// What `init` made.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Created {
    /// The new workspace.
    pub workspace: String,
    /// Its files.
    pub files: Vec<String>,
    /// Its empty folders, which a run fills.
    pub folders: Vec<String>,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let created = create(&args.root, &args.idea)?;
    let dir = Path::new(&created.workspace);
    println!("created {}", dir.display());
    for name in &created.files {
        println!("  {name}");
    }
    println!(
        "  {}",
        FOLDERS.map(|folder| format!("{folder}/")).join("  ")
    );
    println!(
        "next: edit idea.md and config.yaml, check them with `expcluster validate --workspace {}`,",
        dir.display()
    );
    println!(
        "      then `expcluster submit --workspace {} --stage implementation`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates `<root>/<idea>/` with the files of a new idea, all at once; never over an
/// existing one.
pub fn create(root: &Path, idea: &str) -> anyhow::Result<Created> {
    if !is_safe_name(idea) || idea.contains('.') {
        bail!("{idea:?} cannot be an idea name: use letters, digits, `-` and `_`");
    }
    let dir = root.join(idea);
    if dir.exists() {
        bail!("{} already exists: expcluster never overwrites an idea; choose another name or remove it", dir.display());
    }
    let files = idea_files(idea, chrono::Utc::now())?;
    let staging = root.join(format!(".{idea}.init-{}", std::process::id()));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let made = fill_staging(&staging, &files).and_then(|()| publish(&staging, &dir));
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    made?;
    Ok(Created {
        workspace: dir.display().to_string(),
        files: files.iter().map(|(name, _)| (*name).to_owned()).collect(),
        folders: FOLDERS.map(str::to_owned).to_vec(),
    })
}

fn fill_staging(staging: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (name, content) in files {
        let path = staging.join(name);
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
    }
    for folder in FOLDERS {
        std::fs::create_dir_all(staging.join(folder))?;
    }
    Ok(())
}

/// Moves the finished staging folder into place. Claiming the name with `create_dir`
/// first makes a concurrent `init` of the same idea fail instead of replacing the
/// other's folder (a rename onto an empty folder would succeed); the rename then puts
/// the whole idea there at once, so a half-made idea never appears.
fn publish(staging: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| {
        format!(
            "{} already exists: expcluster never overwrites an idea",
            dir.display()
        )
    })?;
    std::fs::rename(staging, dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use expcluster_core::trainer_spec::TrainerSpec;
    use expcluster_core::ExperimentConfig;

    fn config_text() -> String {
        CONFIG.replace("{{IDEA}}", "template-check")
    }

    #[test]
    fn the_template_config_validates() {
        let loaded = ExperimentConfig::parse(&config_text(), Path::new("config.yaml"))
            .expect("template validates");
        assert_eq!(loaded.config.name, "template-check");
    }

    /// The commented trainer block, uncommented in place of `command`, is a valid job.
    #[test]
    fn the_commented_trainer_is_a_valid_trainer() {
        let text = config_text();
        let block: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("  # trainer:"))
            .take_while(|line| line.starts_with("  #"))
            .map(|line| line.strip_prefix("  # ").unwrap_or(""))
            .collect();
        let trainer: serde_yaml::Value =
            serde_yaml::from_str(&block.join("\n")).expect("the trainer block is YAML");
        let json = serde_json::to_value(&trainer["trainer"]).expect("json");
        let spec = TrainerSpec::from_json(&json).expect("the trainer block is a valid trainer");
        assert!(spec.metric_names().contains(&"test_accuracy".to_owned()));
    }

    /// Every option of the schema is shown (trainer options included).
    #[test]
    fn the_template_shows_every_option() {
        let text = config_text();
        let keys = [
            "name",
            "description",
            "primary_metric",
            "goal",
            "metrics",
            "job",
            "command",
            "env",
            "params",
            "trainer",
            "methods",
            "proposed",
            "ablations",
            "stages",
            "implementation",
            "baselines",
            "full",
            "seeds",
            "seed_base",
            "overrides",
            "sweep",
            "sequential",
            "max_seeds",
            "boundary",
            "claims",
            "id",
            "better",
            "than",
            "metric",
            "alpha",
            "statement",
            "resources",
            "gpus_per_job",
            "data_parallel",
            "max_attempts",
            "timeout",
            // trainer
            "dataset",
            "task",
            "model",
            "optimizer",
            "schedule",
            "loss",
            "epochs",
            "batch_size",
            "grad_clip",
            "early_stopping",
            "eval_every_steps",
            "checkpoint_every",
            "precision",
            "threads",
            "path",
            "normalize",
            "val_fraction",
            "x_train",
            "y_train",
            "x_test",
            "y_test",
            "x_val",
            "y_val",
            "train",
            "test",
            "val",
            "target_column",
            "train_images",
            "train_labels",
            "test_images",
            "test_labels",
            "n_train",
            "n_test",
            "n_features",
            "n_classes",
            "n_outputs",
            "noise",
            "data_seed",
            "image_size",
            "channels",
            "seq_len",
            "vocab_size",
            "hidden",
            "activation",
            "dropout",
            "norm",
            "kernel_size",
            "pool",
            "d_model",
            "heads",
            "layers",
            "ff",
            "max_len",
            "lr",
            "weight_decay",
            "betas",
            "eps",
            "momentum",
            "nesterov",
            "warmup_epochs",
            "step_size",
            "gamma",
            "min_factor",
            "label_smoothing",
            "patience",
            "mode",
            "min_delta",
        ];
        for key in keys {
            assert!(
                text.contains(&format!("{key}:")),
                "config.yaml template does not show `{key}`"
            );
        }
        let kinds = [
            "npz",
            "digits",
            "npy",
            "csv",
            "idx",
            "blobs",
            "moons",
            "spirals",
            "teacher",
            "images",
            "sequences",
            "linear",
            "mlp",
            "cnn",
            "transformer",
            "adam",
            "adamw",
            "sgd",
            "constant",
            "step",
            "cosine",
            "cross_entropy",
            "mse",
        ];
        for kind in kinds {
            assert!(
                text.contains(&format!("kind: {kind}")) || text.contains(&format!(" {kind},")),
                "config.yaml template does not show the kind `{kind}`"
            );
        }
    }

    #[test]
    fn idea_json_has_the_seed_fields() {
        let files = idea_files("x", chrono::Utc::now()).expect("files");
        let (_, idea_json) = files
            .iter()
            .find(|(name, _)| *name == "idea.json")
            .expect("idea.json");
        let idea: serde_json::Value = serde_json::from_str(idea_json).expect("json");
        assert_eq!(idea["version"], 1);
        for field in ["title", "created", "last_updated", "update_reason"] {
            assert!(idea[field].is_string(), "idea.json lacks {field}");
        }
        let (_, idea_md) = files
            .iter()
            .find(|(name, _)| *name == "idea.md")
            .expect("idea.md");
        for section in ["## Hypothesis", "## Method", "## Metrics", "## Claims"] {
            assert!(idea_md.contains(section), "idea.md lacks {section}");
        }
    }
}
