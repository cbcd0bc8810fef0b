//! A job's own directory on the worker: `<work_dir>/jobs/<job_id>/a<attempt>/`, with
//! the experiment's code files, an `output/` folder (EXP_OUTPUT_DIR) and the logs.

use expcluster_core::ids::is_safe_name;
use expcluster_proto::v1;
use std::io;
use std::path::{Path, PathBuf};

pub struct JobDir {
    pub root: PathBuf,
    pub output: PathBuf,
    /// The worker's scratch folder this job directory lives in.
    pub work_dir: PathBuf,
}

impl JobDir {
    /// Creates a fresh directory for an attempt and writes the code files into it.
    pub fn create(work_dir: &Path, spec: &v1::JobSpec) -> io::Result<Self> {
        let fingerprint_ok = spec.fingerprint.is_empty() || is_safe_name(&spec.fingerprint);
        if !is_safe_name(&spec.job_id) || !fingerprint_ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unsafe job id or fingerprint",
            ));
        }
        // The ranks of a gang may share a worker: each gets its own directory.
        let attempt_dir = if spec.world_size > 1 && spec.rank > 0 {
            format!("a{}.r{}", spec.attempt, spec.rank)
        } else {
            format!("a{}", spec.attempt)
        };
        let root = work_dir.join("jobs").join(&spec.job_id).join(attempt_dir);
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        let output = root.join("output");
        std::fs::create_dir_all(&output)?;
        for file in &spec.code_files {
            if !is_safe_name(&file.name) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refusing code file name {:?}", file.name),
                ));
            }
            std::fs::write(root.join(&file.name), &file.content)?;
        }
        Ok(Self {
            root,
            output,
            work_dir: work_dir.to_path_buf(),
        })
    }

    /// The directory `root` of an attempt a previous worker on `work_dir` started.
    pub fn existing(work_dir: &Path, root: PathBuf) -> Self {
        Self {
            output: root.join("output"),
            root,
            work_dir: work_dir.to_path_buf(),
        }
    }

    /// The `.npy` files the job left in its output folder: plain files only (a
    /// symlink planted there is skipped, so nothing outside is read).
    pub fn result_files(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.output)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type()?.is_file();
            if is_file && name.ends_with(".npy") {
                files.push((name, entry.path()));
            } else if name.ends_with(".npy") {
                tracing::warn!(file = %entry.path().display(), "skipping a result that is not a plain file");
            }
        }
        files.sort();
        Ok(files)
    }
}
