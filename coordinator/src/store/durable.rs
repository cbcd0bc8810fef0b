//! Appending to a journal file so that a failure leaves nothing half-written.
//!
//! A failed `write` (a full disk) is undone by truncating back to the length before
//! it, so the file never ends in a partial record and the append can be retried once
//! space is back. A failed `fsync` is different: after it the kernel may have dropped
//! the dirty pages, and retrying the fsync can report success for data that is gone
//! (the PostgreSQL "fsyncgate" lesson). So a failed fsync poisons the writer: every
//! later append fails until the coordinator is restarted and re-reads the file.
//!
//! In a serving coordinator the fsync is deferred to [`crate::store::group_commit`]: the
//! append writes and counts its record, and the RPC that caused it answers once the
//! shared fsync covering it is done. [`AppendGuard::append_behind`] defers the write
//! too, for the journals a job's dispatch appends to under the state mutex.

use crate::store::group_commit::{self, Slot, WriteOrder};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// The state of an append-only file.
#[derive(Debug, Default)]
pub struct AppendGuard {
    poisoned: Option<String>,
    /// The file's handle for the sync thread (re-made when the writer's file changes).
    slot: Option<Arc<Slot>>,
    /// Where its records go in each group-commit round.
    order: WriteOrder,
}

impl AppendGuard {
    /// A guard whose records are written at `order` in each group-commit round.
    pub fn ordered(order: WriteOrder) -> Self {
        Self {
            order,
            ..Self::default()
        }
    }

    /// Appends `bytes` and makes them durable (or, in a serving coordinator, counts
    /// them for the next group fsync), or leaves the file as it was.
    pub fn append(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        let deferred = group_commit::deferring();
        self.refuse_if_poisoned(deferred)?;
        let slot = if deferred {
            let metadata = file.metadata()?;
            let identity = (metadata.dev(), metadata.ino());
            match &self.slot {
                Some(slot) if slot.identity == identity => Some(slot.clone()),
                _ => Some(self.new_slot(file, identity)?),
            }
        } else {
            None
        };
        match append_or_undo(file, bytes) {
            Ok(()) => {}
            Err(AppendFailure::Undone(err)) => return Err(err),
            Err(AppendFailure::Torn { err, undo }) => {
                self.poisoned = Some(format!("{err}; truncating back failed: {undo}"));
                return Err(err);
            }
        }
        match slot {
            Some(slot) => group_commit::global().wrote(&slot),
            None => {
                if let Err(err) = file.sync_data() {
                    self.poisoned = Some(err.to_string());
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// [`Self::append`], except that in a serving coordinator the bytes are handed to
    /// the group commit, which writes them with the others of its round before the
    /// fsync ([`group_commit::Committer::append_behind`]): no system call here.
    ///
    /// So the caller's state moves on before its record is written, and a write that
    /// fails (a full disk) is not returned here: the group commit keeps the bytes and
    /// retries them, and no answer is given meanwhile (the waiters of that round are
    /// told to retry). The guard must stay with one file (it is not checked again),
    /// and readers of the file must wait for a ticket before reading what was
    /// appended.
    pub fn append_behind(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        if !group_commit::deferring() {
            return self.append(file, bytes);
        }
        self.refuse_if_poisoned(true)?;
        let slot = match &self.slot {
            Some(slot) => slot.clone(),
            None => {
                let metadata = file.metadata()?;
                self.new_slot(file, (metadata.dev(), metadata.ino()))?
            }
        };
        group_commit::global().append_behind(&slot, bytes);
        Ok(())
    }

    /// Fails once an fsync has failed (this file's, or, when `deferred`, the group
    /// commit's): see the module doc.
    fn refuse_if_poisoned(&mut self, deferred: bool) -> io::Result<()> {
        if deferred && self.poisoned.is_none() {
            self.poisoned = group_commit::global().failure();
        }
        match &self.poisoned {
            Some(reason) => Err(io::Error::other(format!(
                "an earlier fsync failed ({reason}); restart the coordinator once the disk is healthy"
            ))),
            None => Ok(()),
        }
    }

    /// The group commit's handle of `file`, at this guard's place in a round.
    fn new_slot(&mut self, file: &File, identity: (u64, u64)) -> io::Result<Arc<Slot>> {
        let slot = Slot::ordered(file, identity, self.order)?;
        self.slot = Some(slot.clone());
        Ok(slot)
    }
}

/// Why [`append_or_undo`] failed.
pub(crate) enum AppendFailure {
    /// The write failed and was truncated away: the file is as it was.
    Undone(io::Error),
    /// The write failed (`err`) and so did truncating it back (`undo`): the file may
    /// end in a partial record, and nothing appended after it can be trusted.
    Torn { err: io::Error, undo: io::Error },
}

/// Writes `bytes` at the end of `file` (opened for appending), or leaves the file as
/// it was: a failed write (a full disk) is truncated back to the length before it.
/// Shared by the appends that write in the call and the group commit's writes behind.
pub(crate) fn append_or_undo(mut file: &File, bytes: &[u8]) -> Result<(), AppendFailure> {
    let length_before = file.metadata().map_err(AppendFailure::Undone)?.len();
    match file.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(err) => match file.set_len(length_before) {
            Ok(()) => Err(AppendFailure::Undone(err)),
            Err(undo) => Err(AppendFailure::Torn { err, undo }),
        },
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
