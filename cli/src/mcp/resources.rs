//! The workspace's files as MCP resources, `expcluster://workspace/<path>`.
//!
//! The invariant: nothing outside the workspace is ever read. A path is refused when
//! it is absolute, has a `..` component, or names a hidden file or folder (the
//! workspace's `.expcluster/` holds its tokens); what it names after following
//! symlinks must still lie inside the workspace's real path. Only text files are
//! served, up to [`MAX_BYTES`].

use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use std::path::{Component, Path, PathBuf};

const SCHEME: &str = "expcluster://workspace/";
const MAX_BYTES: u64 = 16 << 20;

/// The files the research protocol keeps, listed when they exist.
const LISTED: [(&str, &str, &str); 9] = [
    ("idea.md", "text/markdown", "The idea, current version"),
    (
        "idea.json",
        "application/json",
        "The idea's version, reasons and claim status",
    ),
    (
        "idea_evolution.md",
        "text/markdown",
        "Every version of the idea: what changed and why",
    ),
    ("config.yaml", "application/yaml", "The experiment's config"),
    (
        "baseline_summary.json",
        "application/json",
        "The baselines stage's summary",
    ),
    (
        "research_summary.json",
        "application/json",
        "The full stage's summary",
    ),
    (
        "ablation_summary.json",
        "application/json",
        "The ablations stage's summary",
    ),
    (
        "research_log.jsonl",
        "application/jsonl",
        "The research log, one event a line",
    ),
    (
        "report.md",
        "text/markdown",
        "The report (the report tool writes it)",
    ),
];

/// The listed files that exist in the workspace.
pub fn list(root: &Path) -> Vec<Resource> {
    LISTED
        .iter()
        .filter_map(|(name, mime, description)| {
            let size = std::fs::metadata(root.join(name)).ok()?.len();
            Some(
                Resource::new(format!("{SCHEME}{name}"), *name)
                    .with_description(*description)
                    .with_mime_type(*mime)
                    .with_size(size),
            )
        })
        .collect()
}

/// Any other text file of the workspace by its relative path (logs/…, experiment_results/index.json).
pub fn template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{SCHEME}{{+path}}"), "workspace file")
        .with_description("A text file of the experiment workspace, by its path relative to it (e.g. logs/experiment_log.txt)")
}

/// Reads the resource `uri`; the error says why it is refused.
pub fn read(root: &Path, uri: &str) -> Result<ResourceContents, String> {
    let relative = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("unknown resource {uri:?}: workspace files are {SCHEME}<path>"))?;
    let path = inside(root, relative)?;
    let size = std::fs::metadata(&path)
        .map_err(|err| format!("cannot read {relative}: {err}"))?
        .len();
    if size > MAX_BYTES {
        return Err(format!(
            "{relative} is {size} bytes, more than the {MAX_BYTES} served: read it with a tool (job_logs, metrics) or on disk"
        ));
    }
    let bytes = std::fs::read(&path).map_err(|err| format!("cannot read {relative}: {err}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{relative} is not a text file: only text files are served"))?;
    let mime = LISTED
        .iter()
        .find(|(name, _, _)| *name == relative)
        .map_or("text/plain", |(_, mime, _)| *mime);
    Ok(ResourceContents::TextResourceContents {
        uri: uri.to_owned(),
        mime_type: Some(mime.to_owned()),
        text,
        meta: None,
    })
}

/// The existing file `relative` names inside `root`, or why it is refused. Shared by
/// the resources and the tools that take a path.
pub fn inside(root: &Path, relative: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| Err(format!("{relative:?} is refused: {why}"));
    if relative.is_empty() {
        return refuse("name a file of the workspace by its relative path");
    }
    let path = Path::new(relative);
    if path.is_absolute() {
        return refuse("absolute paths are not served; give a path relative to the workspace");
    }
    for component in path.components() {
        match component {
            Component::Normal(name) if name.to_string_lossy().starts_with('.') => {
                return refuse(
                    "hidden files (the workspace's .expcluster/ holds its tokens) are not served",
                )
            }
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return refuse("`..` leads outside the workspace")
            }
        }
    }
    let real_root = root
        .canonicalize()
        .map_err(|err| format!("cannot open the workspace {}: {err}", root.display()))?;
    let real = root
        .join(path)
        .canonicalize()
        .map_err(|_| format!("{relative} does not exist in the workspace"))?;
    if !real.starts_with(&real_root) {
        return refuse("it is a link to outside the workspace");
    }
    if !real.is_file() {
        return refuse("it is not a file");
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::create_dir_all(root.join(".expcluster")).unwrap();
        std::fs::write(root.join("idea.md"), "# idea\n").unwrap();
        std::fs::write(root.join("logs/experiment_log.txt"), "log\n").unwrap();
        std::fs::write(root.join(".expcluster/client.token"), "secret").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "outside").unwrap();
        (dir, root)
    }

    #[test]
    fn files_inside_are_served() {
        let (_dir, root) = workspace();
        assert!(inside(&root, "idea.md").is_ok());
        assert!(inside(&root, "logs/experiment_log.txt").is_ok());
        assert!(inside(&root, "./idea.md").is_ok());
        let ResourceContents::TextResourceContents {
            text, mime_type, ..
        } = read(&root, "expcluster://workspace/idea.md").unwrap()
        else {
            panic!("text expected");
        };
        assert_eq!(text, "# idea\n");
        assert_eq!(mime_type.as_deref(), Some("text/markdown"));
    }

    #[test]
    fn nothing_outside_is_served() {
        let (dir, root) = workspace();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt")).unwrap();
        let outside = dir.path().join("outside.txt");
        for path in [
            "../outside.txt",
            "logs/../../outside.txt",
            outside.to_str().unwrap(),
            "/etc/passwd",
            ".expcluster/client.token",
            "link.txt",
            "",
            "logs",
            "missing.md",
        ] {
            assert!(inside(&root, path).is_err(), "{path:?} was served");
        }
        assert!(read(&root, "file:///etc/passwd").is_err());
        assert!(read(&root, "expcluster://workspace/../outside.txt").is_err());
    }
}
