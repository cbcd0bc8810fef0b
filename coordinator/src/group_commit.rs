//! Group commit: one fsync for every record appended since the last one.
//!
//! An fsync costs about a millisecond on an ordinary disk. Taken once per record under
//! the coordinator's state mutex, it capped dispatch at a few hundred jobs/s and metric
//! ingestion at a fifth of what the disk can take. So, in a serving coordinator, an
//! append ([`crate::durable::AppendGuard`]) only writes its bytes (still under the
//! mutex, so records never interleave and a failed write is still undone) and counts
//! them; a dedicated thread fsyncs every file written since its last round, outside the
//! mutex, and publishes how far the count is durable. An RPC is answered only once
//! every record written while it ran is covered ([`crate::commit_layer`]), so
//! "acknowledged means durable" (RELIABILITY.md) still holds.
//!
//! A failed fsync may have dropped dirty pages that a later fsync would then report as
//! clean (the PostgreSQL "fsyncgate" lesson), and the in-memory state already moved
//! past the lost records. So the first failure is final: every waiter, present and
//! future, fails, and so does every later append, until the coordinator is restarted
//! and re-reads what is really on disk.
//!
//! Deferral is process-wide and off until [`enable`] (called by `server::serve`, whose
//! layer does the waiting): a process that appends without serving (the CLI's `idea`
//! command, unit tests) keeps the plain fsync-per-append.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// One file with unsynced appends: a handle of its own (a `dup` of the writer's), so
/// the sync thread can fsync it without the writer's lock.
#[derive(Debug)]
pub struct Slot {
    file: File,
    /// The (device, inode) of the file, to tell when a writer moved to another file.
    pub identity: (u64, u64),
    /// Whether the slot is in the pending list (guarded by the committer's lock).
    queued: AtomicBool,
    /// `fsync` rather than `fdatasync` (a directory, after a rename in it).
    full: bool,
}

impl Slot {
    pub fn new(file: &File, identity: (u64, u64)) -> std::io::Result<Arc<Self>> {
        Ok(Self::owning(file.try_clone()?, identity, false))
    }

    fn owning(file: File, identity: (u64, u64), full: bool) -> Arc<Self> {
        Arc::new(Self {
            file,
            identity,
            queued: AtomicBool::new(false),
            full,
        })
    }

    fn sync(&self) -> std::io::Result<()> {
        if self.full {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Records written so far (a counter, not tied to any one file).
    written: u64,
    /// Records known durable.
    synced: u64,
    pending: Vec<Arc<Slot>>,
    /// The first fsync failure; final.
    failed: Option<String>,
    thread_started: bool,
}

/// The counter of written and durable records, and the thread that syncs.
#[derive(Debug)]
pub struct Committer {
    inner: Mutex<Inner>,
    /// Wakes the sync thread.
    work: Condvar,
    /// Wakes blocking waiters.
    done: Condvar,
    /// The durable count (or a failure), for async waiters.
    synced: tokio::sync::watch::Sender<u64>,
}

impl Default for Committer {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            synced: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the sync thread (once).
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let mut inner = self.lock();
        if !inner.thread_started {
            let committer = self.clone();
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || committer.run())?;
            inner.thread_started = true;
        }
        Ok(())
    }

    /// The reason appends must stop, once an fsync failed.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// How many records have been written: a ticket for [`Self::wait`].
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Counts one record just written to `slot`'s file and queues the file for sync.
    pub fn wrote(&self, slot: &Arc<Slot>) {
        let mut inner = self.lock();
        inner.written += 1;
        if !slot.queued.swap(true, Ordering::AcqRel) {
            inner.pending.push(slot.clone());
            self.work.notify_one();
        }
    }

    /// Waits until every record counted up to `ticket` is durable.
    pub async fn wait(&self, ticket: u64) -> Result<(), String> {
        let mut synced = self.synced.subscribe();
        // The watch only ever moves forward; its sender lives as long as `self`.
        let _ = synced
            .wait_for(|synced| *synced >= ticket || self.lock().failed.is_some())
            .await;
        self.outcome(ticket)
    }

    /// [`Self::wait`] for callers outside async code.
    pub fn wait_blocking(&self, ticket: u64) -> Result<(), String> {
        let mut inner = self.lock();
        while inner.synced < ticket && inner.failed.is_none() {
            inner = self.done.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        drop(inner);
        self.outcome(ticket)
    }

    fn outcome(&self, ticket: u64) -> Result<(), String> {
        let inner = self.lock();
        match &inner.failed {
            Some(reason) => Err(reason.clone()),
            None if inner.synced >= ticket => Ok(()),
            None => Err("the sync thread stopped".to_owned()),
        }
    }

    /// The sync thread: takes every file written since the last round, fsyncs each,
    /// and publishes the count they cover.
    fn run(&self) {
        loop {
            let (batch, covers) = {
                let mut inner = self.lock();
                while inner.pending.is_empty() {
                    inner = self.work.wait(inner).unwrap_or_else(|p| p.into_inner());
                }
                let batch = std::mem::take(&mut inner.pending);
                // Under the lock: an append after this line queues its file again,
                // for the next round.
                for slot in &batch {
                    slot.queued.store(false, Ordering::Release);
                }
                (batch, inner.written)
            };
            let result = sync_all(&batch);
            let mut inner = self.lock();
            match result {
                Ok(()) if inner.failed.is_none() => inner.synced = inner.synced.max(covers),
                Ok(()) => {}
                Err(reason) => {
                    tracing::error!(%reason, "fsync failed: no further record can be acknowledged until the coordinator restarts");
                    inner.failed.get_or_insert(reason);
                }
            }
            let synced = inner.synced;
            drop(inner);
            self.done.notify_all();
            self.synced.send_replace(synced);
        }
    }
}

/// Fsyncs the files, several at a time (a disk queue serves concurrent flushes at
/// about the cost of one).
fn sync_all(batch: &[Arc<Slot>]) -> Result<(), String> {
    const PARALLEL: usize = 8;
    let sync = |slot: &Arc<Slot>| {
        slot.sync().map_err(|err| {
            format!("an fsync failed ({err}); restart the coordinator once the disk is healthy")
        })
    };
    if batch.len() <= 1 {
        return batch.iter().try_for_each(sync);
    }
    let chunk = batch.len().div_ceil(PARALLEL);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(sync)))
            .collect();
        handles.into_iter().try_for_each(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err("an fsync thread panicked".to_owned()))
        })
    })
}

/// Replaces `path` with `bytes` for a caller whose answer waits on the committer (an
/// RPC handler): the file is written and renamed into place now, so readers see it at
/// once, and it and its directory are fsynced with the next group commit. Without
/// deferral, [`crate::workspace::write_atomic`].
///
/// Only for a file that no other record needs durable before itself (an uploaded log
/// or result array, acknowledged on its own before the worker completes the attempt):
/// until the shared fsync, a crash can leave it empty or missing, and the caller has
/// not been answered yet.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if !deferring() {
        return crate::workspace::write_atomic(path, bytes);
    }
    if let Some(reason) = global().failure() {
        return Err(std::io::Error::other(reason));
    }
    let (file, dir) = replace_unsynced(path, bytes)?;
    let dir = File::open(dir)?;
    let committer = global();
    committer.wrote(&Slot::owning(file, (0, 0), false));
    committer.wrote(&Slot::owning(dir, (0, 0), true));
    Ok(())
}

/// Replaces `path` with `bytes` (a temporary file renamed into place, so readers never
/// see half a file) without fsyncing; returns the file and its directory, for a caller
/// that syncs them later (or not at all, for a file recovery can rebuild).
pub fn replace_unsynced<'a>(
    path: &'a std::path::Path,
    bytes: &[u8],
) -> std::io::Result<(File, &'a std::path::Path)> {
    use std::io::Write;
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => return Err(std::io::Error::other("path has no parent or file name")),
    };
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}{}-{}",
        name.to_string_lossy(),
        crate::workspace::TEMP_MARKER,
        std::process::id()
    ));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        std::fs::rename(&temp, path)?;
        Ok::<_, std::io::Error>(file)
    })();
    let file = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    Ok((file, dir))
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static GLOBAL: OnceLock<Arc<Committer>> = OnceLock::new();

/// The process's committer.
pub fn global() -> &'static Arc<Committer> {
    GLOBAL.get_or_init(|| Arc::new(Committer::default()))
}

/// Turns on deferred fsyncs for this process (a serving coordinator). If the sync
/// thread cannot be started, appends keep their own fsync (slower, still correct).
/// `EXPCLUSTER_GROUP_COMMIT=off` keeps them too: the benchmarks' "before", and a way
/// out should a file system misbehave with shared fsyncs.
pub fn enable() {
    if std::env::var("EXPCLUSTER_GROUP_COMMIT").is_ok_and(|v| v == "off") {
        tracing::warn!("EXPCLUSTER_GROUP_COMMIT=off: every append fsyncs on its own");
        return;
    }
    match global().start() {
        Ok(()) => ENABLED.store(true, Ordering::Release),
        Err(err) => {
            tracing::warn!(%err, "cannot start the group-commit thread; every append syncs on its own")
        }
    }
}

/// Whether appends defer their fsync to the committer.
pub fn deferring() -> bool {
    ENABLED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn identity(file: &File) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().expect("metadata");
        (meta.dev(), meta.ino())
    }

    #[test]
    fn waiters_return_once_their_records_are_synced() {
        let committer = Arc::new(Committer::default());
        committer.start().expect("start");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = File::create(dir.path().join("log")).expect("create");
        let slot = Slot::new(&file, identity(&file)).expect("slot");
        for _ in 0..3 {
            file.write_all(b"x\n").expect("write");
            committer.wrote(&slot);
        }
        assert_eq!(committer.written(), 3);
        committer.wait_blocking(3).expect("durable");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        file.write_all(b"y\n").expect("write");
        committer.wrote(&slot);
        runtime.block_on(committer.wait(4)).expect("durable");
    }

    #[test]
    fn a_failed_fsync_fails_every_waiter_for_good() {
        let committer = Arc::new(Committer::default());
        committer.start().expect("start");
        // fsync on a character device fails (EINVAL): a stand-in for a failing disk.
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        let slot = Slot::new(&null, identity(&null)).expect("slot");
        committer.wrote(&slot);
        let err = committer.wait_blocking(1).expect_err("the fsync fails");
        assert!(err.contains("restart the coordinator"), "{err}");
        assert!(committer.failure().is_some());
        // A healthy file afterwards is not enough: the lost pages are gone.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("log")).expect("create");
        let healthy = Slot::new(&file, identity(&file)).expect("slot");
        committer.wrote(&healthy);
        assert!(committer.wait_blocking(2).is_err());
    }

    /// A round of many files is synced by several threads; a failure in any file of
    /// it, here one of the other threads' (fsync on /dev/null fails), fails the round.
    #[test]
    fn a_round_of_many_files_is_synced_by_the_helpers_and_any_failure_fails_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slots: Vec<Arc<Slot>> = (0..20)
            .map(|index| {
                let mut file = File::create(dir.path().join(format!("f{index}"))).expect("create");
                file.write_all(b"x\n").expect("write");
                Slot::new(&file, identity(&file)).expect("slot")
            })
            .collect();
        sync_all(&slots).expect("every file synced");
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        let mut with_failure = slots.clone();
        with_failure.insert(5, Slot::new(&null, identity(&null)).expect("slot"));
        let err = sync_all(&with_failure).expect_err("one fsync fails");
        assert!(err.contains("restart the coordinator"), "{err}");
    }
}
