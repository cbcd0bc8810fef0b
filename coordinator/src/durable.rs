//! Appending to a journal file so that a failure leaves nothing half-written.
//!
//! A failed `write` (a full disk) is undone by truncating back to the length before
//! it, so the file never ends in a partial record and the append can be retried once
//! space is back. A failed `fsync` is different: after it the kernel may have dropped
//! the dirty pages, and retrying the fsync can report success for data that is gone
//! (the PostgreSQL "fsyncgate" lesson). So a failed fsync poisons the writer: every
//! later append fails until the coordinator is restarted and re-reads the file.

use std::fs::File;
use std::io::{self, Write};

/// The state of an append-only file.
#[derive(Debug, Default)]
pub struct AppendGuard {
    poisoned: Option<String>,
}

impl AppendGuard {
    /// Appends `bytes` durably, or leaves the file as it was.
    pub fn append(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(io::Error::other(format!(
                "an earlier fsync failed ({reason}); restart the coordinator once the disk is healthy"
            )));
        }
        let length_before = file.metadata()?.len();
        if let Err(err) = file.write_all(bytes) {
            // Undo the partial record; if even that fails, nothing can be trusted.
            if let Err(undo) = file.set_len(length_before) {
                self.poisoned = Some(format!("{err}; truncating back failed: {undo}"));
            }
            return Err(err);
        }
        if let Err(err) = file.sync_data() {
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        let mut guard = AppendGuard::default();
        guard.append(&mut file, b"one\n").expect("append");
        guard.append(&mut file, b"two\n").expect("append");
        assert_eq!(std::fs::read(&path).expect("read"), b"one\ntwo\n");
    }
}
