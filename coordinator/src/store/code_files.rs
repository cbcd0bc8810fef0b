//! The experiment's code files: shipped to workers with each job and digested into
//! job fingerprints, so fixing `runfile.py` reruns the jobs that ran the old code.

use crate::error::CoordinatorError;
use expcluster_core::expand::short_digest;
use std::path::Path;

/// Extensions of top-level workspace files that count as code.
const CODE_EXTENSIONS: [&str; 2] = ["py", "sh"];
/// Upper bound on the code shipped with one job.
const MAX_CODE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct CodeFiles {
    pub files: Vec<(String, Vec<u8>)>,
    pub digest: String,
}

/// Reads the code files at the top of the workspace, sorted by name.
pub fn read_code_files(root: &Path) -> Result<CodeFiles, CoordinatorError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(root).map_err(CoordinatorError::storage)?;
    for entry in entries {
        let entry = entry.map_err(CoordinatorError::storage)?;
        let path = entry.path();
        let is_code = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| CODE_EXTENSIONS.contains(&ext));
        // Symlinks are not followed: the code must live in the workspace.
        if !is_code
            || !entry
                .file_type()
                .map_err(CoordinatorError::storage)?
                .is_file()
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = std::fs::read(&path).map_err(CoordinatorError::storage)?;
        files.push((name, content));
    }
    files.sort();
    let total: usize = files.iter().map(|(_, content)| content.len()).sum();
    if total > MAX_CODE_BYTES {
        return Err(CoordinatorError::Config(format!(
            "the workspace's code files total {total} bytes (limit {MAX_CODE_BYTES}): move data out of .py files"
        )));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for (name, content) in &files {
        parts.push(name.as_bytes());
        parts.push(content);
    }
    let digest = short_digest(&parts);
    Ok(CodeFiles { files, digest })
}
