//! The experiment workspace on disk (`experiments/<idea>/`) and the one way files in
//! it are replaced: atomically (temp file in the same directory, fsync, rename, fsync
//! the directory), so a crash leaves the whole old or the whole new version.

use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of in-flight temp files; any left at start-up are from a crash and removed.
pub(crate) const TEMP_MARKER: &str = ".expcluster-tmp";

/// Paths of one experiment's workspace. The coordinator is its only writer.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Opens a workspace, creating the folders a run writes to and removing temp files
    /// a crash left behind.
    pub fn open(root: &Path) -> io::Result<Self> {
        let root = root.canonicalize().map_err(|err| {
            io::Error::new(err.kind(), format!("workspace {}: {err}", root.display()))
        })?;
        let workspace = Self { root };
        for dir in [
            workspace.results_dir(),
            workspace.figures_dir(),
            workspace.logs_dir(),
            workspace.state_dir(),
        ] {
            fs::create_dir_all(&dir)?;
            remove_stale_temp_files(&dir)?;
        }
        remove_stale_temp_files(&workspace.root)?;
        Ok(workspace)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The idea's name: the workspace folder's name.
    pub fn idea_name(&self) -> String {
        self.root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    pub fn research_log_path(&self) -> PathBuf {
        self.root.join("research_log.jsonl")
    }
    pub fn idea_json_path(&self) -> PathBuf {
        self.root.join("idea.json")
    }
    pub fn results_dir(&self) -> PathBuf {
        self.root.join("experiment_results")
    }
    pub fn figures_dir(&self) -> PathBuf {
        self.root.join("figures")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The coordinator's private state (metric spools); not part of the seed layout.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".expcluster")
    }
    /// Raw results of one job under one fingerprint.
    /// One line per succeeded attempt ([`crate::store::results_file`]).
    pub fn job_results_path(&self) -> PathBuf {
        self.results_dir().join("job_results.jsonl")
    }
    /// A job's uploaded files (and, before `job_results.jsonl`, its `metrics.json`).
    pub fn job_results_dir(&self, job_id: &str, fingerprint: &str) -> PathBuf {
        self.results_dir()
            .join("jobs")
            .join(job_id)
            .join(fingerprint)
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp = dir.join(format!(
        ".{}{}-{}",
        file_name.to_string_lossy(),
        TEMP_MARKER,
        std::process::id()
    ));
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Appends `text` to a plain log file (not atomic: logs only grow).
pub fn append_text(path: &Path, text: &str) -> io::Result<()> {
    open_append(path)?.write_all(text.as_bytes())
}

/// Opens `path` for appending, creating it if needed.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Writes a 1-D float64 `.npy` atomically.
pub fn write_npy_1d(path: &Path, values: &[f64]) -> io::Result<()> {
    let mut bytes = Vec::new();
    Array1::from(values.to_vec())
        .write_npy(&mut bytes)
        .map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes a 2-D float64 `.npy` (rows padded with NaN to the longest) atomically.
pub fn write_npy_2d(path: &Path, rows: &[Vec<f64>]) -> io::Result<()> {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(f64::NAN, width - row.len()));
    }
    let array = Array2::from_shape_vec((rows.len(), width), flat).map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

fn remove_stale_temp_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().contains(TEMP_MARKER) {
            tracing::warn!(file = %entry.path().display(), "removing a temp file left by a crash");
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("summary.json");
        write_atomic(&path, b"old").expect("write");
        write_atomic(&path, b"new contents").expect("replace");
        assert_eq!(fs::read(&path).expect("read"), b"new contents");
        let names: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1, "only the file itself remains");
    }

    #[test]
    fn open_removes_stale_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(format!(".x.json{TEMP_MARKER}-1"));
        fs::write(&stale, b"half").expect("write");
        Workspace::open(dir.path()).expect("open");
        assert!(!stale.exists());
    }
}
