//! The worker's work dir as its identity on a node: one worker at a time holds it
//! (an exclusive `flock` on `worker.lock`, released by the kernel when the process
//! dies, however it dies), and it keeps the id the coordinator gave the worker
//! (`worker.id`, readable by the worker's user only: the id is what its reports are
//! fenced by).
//!
//! So a worker started on a work dir knows that the worker which used it before is
//! dead, which id that worker had, and (`attempt_record.rs`) which attempts it left
//! running: everything it needs to register as that worker's successor and carry
//! its attempts on. A work dir that another running worker holds is refused.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "worker.lock";
const ID_FILE: &str = "worker.id";

/// A work dir held by this process (until it is dropped or the process dies).
pub struct WorkDir {
    root: PathBuf,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    #[error("work dir {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(
        "another worker is running with the work dir {0}: give each worker its own --work-dir"
    )]
    InUse(PathBuf),
}

impl WorkDir {
    /// Creates `root` if needed and takes it; refused while another worker holds it.
    pub fn open(root: &Path) -> Result<Self, WorkDirError> {
        let io_error = |err: io::Error| WorkDirError::Io {
            path: root.to_path_buf(),
            reason: err.to_string(),
        };
        std::fs::create_dir_all(root).map_err(io_error)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))
            .map_err(io_error)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(WorkDirError::InUse(root.to_path_buf()))
            }
            Err((_, errno)) => return Err(io_error(io::Error::from(errno))),
        };
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The id of the worker that used this work dir before, if it kept one.
    pub fn previous_worker_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(ID_FILE)).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    /// Keeps `worker_id` for the next worker on this work dir (atomically, mode 0600).
    pub fn remember_worker_id(&self, worker_id: &str) -> io::Result<()> {
        let temp = self.root.join(format!("{ID_FILE}.tmp"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&temp)?;
        writeln!(file, "{worker_id}")?;
        file.sync_all()?;
        std::fs::rename(&temp, self.root.join(ID_FILE))?;
        File::open(&self.root)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_worker_holds_a_work_dir_and_the_next_finds_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("work");
        let first = WorkDir::open(&root).unwrap();
        assert_eq!(first.previous_worker_id(), None);
        assert!(matches!(WorkDir::open(&root), Err(WorkDirError::InUse(_))));
        first.remember_worker_id("w1-node-abc").unwrap();
        drop(first);
        let next = WorkDir::open(&root).unwrap();
        assert_eq!(next.previous_worker_id().as_deref(), Some("w1-node-abc"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join(ID_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the id is a credential");
    }
}
