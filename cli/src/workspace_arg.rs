//! Finding the experiment workspace a command is about.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// `--workspace DIR`, else `--idea NAME` (under `experiments/`), else the current
/// directory when it holds a config.yaml, else the only idea under `experiments/`.
pub fn resolve(workspace: Option<&Path>, idea: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = workspace {
        return check(dir);
    }
    if let Some(idea) = idea {
        return check(&Path::new("experiments").join(idea));
    }
    if Path::new("config.yaml").is_file() {
        return check(Path::new("."));
    }
    let ideas: Vec<PathBuf> = std::fs::read_dir("experiments")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.join("config.yaml").is_file())
                .collect()
        })
        .unwrap_or_default();
    match ideas.as_slice() {
        [only] => check(only),
        [] => bail!("no experiment found: pass --workspace experiments/<idea>, or create one with `expcluster init <idea>`"),
        _ => bail!(
            "several experiments under experiments/ ({}): choose one with --idea <name>",
            ideas.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn check(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.join("config.yaml").is_file() {
        bail!(
            "{} has no config.yaml: create the experiment with `expcluster init <idea>` or point --workspace at it",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}
