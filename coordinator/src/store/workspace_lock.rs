//! The advisory lock that keeps two writers off one workspace.
//!
//! The coordinator is the only writer of `experiments/<idea>/`; the offline commands
//! (`expcluster idea update`, `expcluster summarize`) write the same files, so all of
//! them take an exclusive `flock` on `.expcluster/lock` first and refuse to start when
//! someone holds it. `flock` is released by the kernel when the holder dies (even by
//! `kill -9`), so a crashed coordinator never leaves a stale lock behind; the file's
//! text (who holds it) is only for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("workspace {root} is in use ({holder}): stop that process first; a coordinator and `expcluster idea`/`summarize` never write one workspace at the same time")]
    Busy { root: PathBuf, holder: String },
    #[error("cannot lock {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Held for as long as this value lives.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: nix::fcntl::Flock<File>,
}

/// The lock file of a workspace.
pub fn lock_path(root: &Path) -> PathBuf {
    root.join(".expcluster").join("lock")
}

/// Takes the workspace's lock without waiting; `holder` says who holds it (shown to
/// whoever is refused).
pub fn acquire(root: &Path, holder: &str) -> Result<WorkspaceLock, LockError> {
    let path = lock_path(root);
    let io_error = |err: std::io::Error| LockError::Io {
        path: path.clone(),
        reason: err.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            let note = format!("{holder} (pid {})\n", std::process::id());
            locked.set_len(0).map_err(io_error)?;
            locked.rewind().map_err(io_error)?;
            locked.write_all(note.as_bytes()).map_err(io_error)?;
            Ok(WorkspaceLock { _file: locked })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "locked by another expcluster process".to_owned(),
                text => format!("held by {text}"),
            };
            Err(LockError::Busy {
                root: root.to_owned(),
                holder,
            })
        }
        Err((_, errno)) => Err(LockError::Io {
            path,
            reason: errno.desc().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path(), "coordinator").expect("first lock");
        let err = acquire(dir.path(), "expcluster summarize").expect_err("busy");
        assert!(err.to_string().contains("coordinator (pid"), "{err}");
        drop(first);
        acquire(dir.path(), "expcluster summarize").expect("free again");
    }
}
