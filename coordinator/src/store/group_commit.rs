//! Group commit: one fsync for every record appended since the last one.
//!
//! An fsync costs about a millisecond on an ordinary disk. Taken once per record under
//! the coordinator's state mutex, it capped dispatch at a few hundred jobs/s and metric
//! ingestion at a fifth of what the disk can take. So, in a serving coordinator, an
//! append ([`crate::store::durable::AppendGuard`]) only writes its bytes (still under the
//! mutex, so records never interleave and a failed write is still undone) and counts
//! them; a dedicated thread fsyncs every file written since its last round, outside the
//! mutex, and publishes how far the count is durable. An RPC is answered only once
//! every record written while it ran is covered ([`crate::service::commit_layer`]), so
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

use crate::store::durable::AppendFailure;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Where a file's records go in each round: the records of an earlier file are
/// written before those of a later one. A crash mid-round then leaves no record on
/// disk that refers to one still unwritten in another file: a research-log event
/// names a results line and a stage or lease of the journal, and a results line a
/// stage. (The other way, a lease record after the failure event of the attempt
/// before it, a lost event only loses an answer never given: the attempt's worker
/// retries it and is told the attempt is over.)
///
/// This order is only needed, and only kept, within a round. A round writes each
/// file's bytes in one `write`, which loses how the appends to different files were
/// interleaved; the order puts back the one interleaving that matters. Across rounds
/// the order is that of the appends: rounds run one after another on one thread, and
/// each takes every pending byte at one instant (under the committer's lock), so a
/// record appended after another is written in the same round as it or a later one.
/// The coordinator appends a record only after those it refers to (the stage record,
/// then `stage_started`; the lease, then the events of its attempt; the results line,
/// then `job_completed`), all under its state mutex, so no record reaches the disk
/// before one it refers to, in one round or across two. That append order is the
/// callers' part of the guarantee: an event appended *before* the record it names
/// could be taken by a round alone and written first. Nothing needs that (a record
/// names what exists already), so records are not handed over in batches that a round
/// would take all or none of, which every caller would have to build.
///
/// A round whose write failed (a full disk) keeps it too: its files are queued again
/// before its waiters hear of the failure, so whatever is appended afterwards is
/// taken with them and written behind them in this order. (A later record of an
/// earlier file, say a journal record, may then be written before a results line or
/// event appended before it: they refer to it, never it to them.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteOrder {
    /// The coordinator's journal: stage definitions, leases.
    Journal,
    /// `job_results.jsonl`.
    Results,
    /// `research_log.jsonl`, and any file with no place of its own.
    #[default]
    ResearchLog,
}

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
    /// Its place in a round's writes.
    order: WriteOrder,
    /// Records appended behind ([`Committer::append_behind`]) and not yet written:
    /// the sync thread writes them, then fsyncs. Locked only under the committer's
    /// lock, so a round takes every file's bytes at one instant.
    unwritten: Mutex<Vec<u8>>,
    /// Tests only: while set, writes behind fail and are undone, as on a full disk
    /// (a real one cannot be had in a test: /dev/full's writes cannot be undone).
    #[cfg(test)]
    disk_full: AtomicBool,
}

impl Slot {
    pub fn new(file: &File, identity: (u64, u64)) -> std::io::Result<Arc<Self>> {
        Self::ordered(file, identity, WriteOrder::default())
    }

    /// A slot whose records are written at `order` in each round.
    pub fn ordered(
        file: &File,
        identity: (u64, u64),
        order: WriteOrder,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Self::owning(file.try_clone()?, identity, false, order))
    }

    fn owning(file: File, identity: (u64, u64), full: bool, order: WriteOrder) -> Arc<Self> {
        Arc::new(Self {
            file,
            identity,
            queued: AtomicBool::new(false),
            full,
            order,
            unwritten: Mutex::new(Vec::new()),
            #[cfg(test)]
            disk_full: AtomicBool::new(false),
        })
    }

    fn unwritten(&self) -> MutexGuard<'_, Vec<u8>> {
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `bytes` at the end of the file, or leaves the file as it was (a failed
    /// write, a full disk, is truncated away so it can be retried whole).
    fn write_behind(&self, bytes: &[u8]) -> Result<(), WriteFailure> {
        #[cfg(test)]
        if self.disk_full.load(Ordering::Acquire) {
            return Err(WriteFailure::retry(std::io::ErrorKind::StorageFull.into()));
        }
        crate::store::durable::append_or_undo(&self.file, bytes).map_err(|failure| match failure {
            AppendFailure::Undone(err) => WriteFailure::retry(err),
            // A partial record that cannot be removed: nothing can be trusted.
            AppendFailure::Torn { err, undo } => WriteFailure::Final(format!(
                "a write failed ({err}) and truncating it back failed ({undo}); restart the coordinator once the disk is healthy"
            )),
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
    /// The last round whose writes failed (a full disk): the count it was to cover
    /// and why. Its bytes are kept and retried; waiters up to it are told to retry.
    write_failed: Option<(u64, String)>,
    thread_started: bool,
    /// Rounds taken so far (tests).
    rounds: u64,
}

/// Why a round's writes failed.
enum WriteFailure {
    /// The file is as it was: the bytes are kept and written again next round.
    Retry(String),
    /// As a failed fsync: nothing further can be acknowledged.
    Final(String),
}

impl WriteFailure {
    fn retry(err: std::io::Error) -> Self {
        Self::Retry(format!(
            "a write failed ({err}); free space on the workspace's disk, it is retried"
        ))
    }
}

/// How long the sync thread waits before writing again after a failed write.
const RETRY_WRITES_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

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

    /// Why records cannot be written now (the last round's write failed, a full disk,
    /// and none has succeeded since), if so.
    pub fn writes_failing(&self) -> Option<String> {
        let inner = self.lock();
        match &inner.write_failed {
            Some((through, reason)) if inner.synced < *through => Some(reason.clone()),
            _ => None,
        }
    }

    /// How many records have been written: a ticket for [`Self::wait`].
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Counts one record just written to `slot`'s file and queues the file for sync.
    pub fn wrote(&self, slot: &Arc<Slot>) {
        let mut inner = self.lock();
        inner.written += 1;
        self.queue(&mut inner, slot);
    }

    /// Appends one record to `slot`'s file behind the caller: the bytes are kept, and
    /// the sync thread writes them (all of a round's, for each file, in one `write`)
    /// before its fsync. A caller under a lock pays a copy instead of a system call.
    ///
    /// The record is durable, like any other, once a ticket taken after this call is;
    /// until then it is in memory only: a write that fails (a full disk) fails the
    /// waiters of its round, keeps the bytes and retries them, so nothing is
    /// acknowledged that is not on disk. Only for files that nothing reads back while
    /// the records may be unwritten, short of waiting for a ticket first.
    pub fn append_behind(&self, slot: &Arc<Slot>, bytes: &[u8]) {
        let mut inner = self.lock();
        slot.unwritten().extend_from_slice(bytes);
        inner.written += 1;
        self.queue(&mut inner, slot);
    }

    /// Puts `slot`'s file in the next round, unless it is there already.
    fn queue(&self, inner: &mut Inner, slot: &Arc<Slot>) {
        if !slot.queued.swap(true, Ordering::AcqRel) {
            inner.pending.push(slot.clone());
            if !self.holds_wake() {
                self.work.notify_one();
            }
        }
    }

    /// Opens a [`WakeLater`] scope on this thread. Scopes nest; one of another
    /// committer inside it holds nothing back.
    pub fn wake_later(&self) -> WakeLater<'_> {
        WAKE_LATER.with(|held| {
            let (committer, depth, queued) = held.get();
            if depth == 0 {
                held.set((self.address(), 1, false));
            } else {
                held.set((committer, depth + 1, queued));
            }
        });
        WakeLater {
            committer: self,
            _not_send: std::marker::PhantomData,
        }
    }

    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether this call is in a [`WakeLater`] scope of this committer on this thread
    /// (which then wakes the sync thread when it ends).
    fn holds_wake(&self) -> bool {
        WAKE_LATER.with(|held| {
            let (committer, depth, _) = held.get();
            let holds = depth > 0 && committer == self.address();
            if holds {
                held.set((committer, depth, true));
            }
            holds
        })
    }

    /// Waits until every record counted up to `ticket` is durable.
    pub async fn wait(&self, ticket: u64) -> Result<(), String> {
        let mut synced = self.synced.subscribe();
        // The watch only ever moves forward; its sender lives as long as `self`.
        let _ = synced
            .wait_for(|synced| *synced >= ticket || self.lock().settled(ticket))
            .await;
        self.outcome(ticket)
    }

    /// [`Self::wait`] for callers outside async code.
    pub fn wait_blocking(&self, ticket: u64) -> Result<(), String> {
        // A wake held back by this thread's scope would never come while it waits.
        let held = WAKE_LATER.with(|held| {
            let (committer, depth, queued) = held.get();
            held.set((committer, depth, false));
            queued && committer == self.address()
        });
        if held {
            self.work.notify_one();
        }
        let mut inner = self.lock();
        while inner.synced < ticket && !inner.settled(ticket) {
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
            None => match &inner.write_failed {
                Some((through, reason)) if *through >= ticket => Err(reason.clone()),
                _ => Err("the sync thread stopped".to_owned()),
            },
        }
    }

    /// The sync thread: takes every file written since the last round, writes what
    /// was appended behind, fsyncs each, and publishes the count they cover.
    fn run(&self) {
        // Whether the last round's writes failed: a full disk is logged once, and again
        // when it is over, not every tenth of a second.
        let mut writes_failing = false;
        loop {
            let (batch, covers) = {
                let mut inner = self.lock();
                while inner.pending.is_empty() {
                    inner = self.work.wait(inner).unwrap_or_else(|p| p.into_inner());
                }
                let mut batch: Vec<(Arc<Slot>, Vec<u8>)> = std::mem::take(&mut inner.pending)
                    .into_iter()
                    .map(|slot| {
                        // Under the lock: an append after this line queues its file
                        // again, for the next round, and every file's bytes are taken
                        // at the same instant, so that, written in `WriteOrder`, a
                        // record never reaches the disk before one it refers to.
                        slot.queued.store(false, Ordering::Release);
                        let bytes = std::mem::take(&mut *slot.unwritten());
                        (slot, bytes)
                    })
                    .collect();
                if inner.failed.is_some() {
                    // The first failure is final (see the module doc): nothing more
                    // is acknowledged, and writing behind a torn record, or after an
                    // fsync that may have lost pages, only adds to what the restart
                    // must sort out. The bytes are dropped; their waiters fail.
                    continue;
                }
                batch.sort_by_key(|(slot, _)| slot.order);
                inner.rounds += 1;
                (batch, inner.written)
            };
            let result = match write_all_behind(&batch) {
                Ok(()) => {
                    let slots: Vec<Arc<Slot>> = batch.into_iter().map(|(slot, _)| slot).collect();
                    sync_all(&slots).map_err(WriteFailure::Final)
                }
                Err((failure, written)) => {
                    // A final failure is not retried: the bytes of a torn write would
                    // go again behind its torn part, round after round, with no pause.
                    if matches!(failure, WriteFailure::Retry(_)) {
                        self.retry_round(batch, written);
                    }
                    Err(failure)
                }
            };
            let mut inner = self.lock();
            let retry_later = match result {
                Ok(()) => {
                    if inner.failed.is_none() {
                        inner.synced = inner.synced.max(covers);
                    }
                    if std::mem::take(&mut writes_failing) {
                        tracing::warn!("the journals are written again");
                    }
                    false
                }
                Err(WriteFailure::Retry(reason)) => {
                    if !std::mem::replace(&mut writes_failing, true) {
                        tracing::error!(%reason, retry_every = ?RETRY_WRITES_AFTER, "cannot write the journals: every answer is UNAVAILABLE until they are");
                    }
                    inner.write_failed = Some((covers, reason));
                    true
                }
                Err(WriteFailure::Final(reason)) => {
                    tracing::error!(%reason, "fsync failed: no further record can be acknowledged until the coordinator restarts");
                    inner.failed.get_or_insert(reason);
                    false
                }
            };
            let synced = inner.synced;
            drop(inner);
            self.done.notify_all();
            self.synced.send_replace(synced);
            if retry_later {
                std::thread::sleep(RETRY_WRITES_AFTER);
            }
        }
    }

    /// Puts a failed round back: the bytes not written (`written` says which files'
    /// were) go back in front of any appended since, and every file of the round is
    /// queued again, to be written and fsynced by the next round.
    fn retry_round(&self, batch: Vec<(Arc<Slot>, Vec<u8>)>, written: Vec<bool>) {
        let mut inner = self.lock();
        for ((slot, bytes), written) in batch.into_iter().zip(written) {
            if !written {
                let mut unwritten = slot.unwritten();
                let newer = std::mem::replace(&mut *unwritten, bytes);
                unwritten.extend_from_slice(&newer);
            }
            self.queue(&mut inner, &slot);
        }
    }
}

impl Inner {
    /// Whether a waiter for `ticket` has its answer short of the ticket being durable:
    /// the final failure, or a failed write of a round that was to cover it.
    fn settled(&self, ticket: u64) -> bool {
        self.failed.is_some()
            || self
                .write_failed
                .as_ref()
                .is_some_and(|(through, _)| *through >= ticket)
    }
}

/// Writes each file's bytes of a round, in order; on a failure, which files were
/// written (the rest are as they were).
fn write_all_behind(batch: &[(Arc<Slot>, Vec<u8>)]) -> Result<(), (WriteFailure, Vec<bool>)> {
    let mut written = vec![false; batch.len()];
    for (index, (slot, bytes)) in batch.iter().enumerate() {
        if !bytes.is_empty() {
            if let Err(failure) = slot.write_behind(bytes) {
                return Err((failure, written));
            }
        }
        written[index] = true;
    }
    Ok(())
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
/// deferral, [`crate::store::workspace::write_atomic`].
///
/// Only for a file that no other record needs durable before itself (an uploaded log
/// or result array, acknowledged on its own before the worker completes the attempt):
/// until the shared fsync, a crash can leave it empty or missing, and the caller has
/// not been answered yet.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if !deferring() {
        return crate::store::workspace::write_atomic(path, bytes);
    }
    if let Some(reason) = global().failure() {
        return Err(std::io::Error::other(reason));
    }
    let (file, dir) = replace_unsynced(path, bytes)?;
    let dir = File::open(dir)?;
    let committer = global();
    committer.wrote(&Slot::owning(file, (0, 0), false, WriteOrder::default()));
    committer.wrote(&Slot::owning(dir, (0, 0), true, WriteOrder::default()));
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
        crate::store::workspace::TEMP_MARKER,
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

thread_local! {
    /// This thread's open [`WakeLater`] scopes: the committer they hold back (its
    /// address, only compared), how many are open, and whether a file was queued.
    static WAKE_LATER: std::cell::Cell<(usize, u32, bool)> = const { std::cell::Cell::new((0, 0, false)) };
}

/// While it lives, files this thread queues for a round of its committer do not wake
/// the sync thread; it is woken once when the scope ends. A call appends its records
/// under the state lock one after another (a stage record, its `stage_started` and
/// the first lease; a results line, its `job_completed` and the next lease): woken at
/// the first, the sync thread took them in two or three rounds, and ran beside the
/// call, competing with it for the CPU and the committer's lock, while the call was
/// on its way to start a job. Woken after the last, it takes them in one. Not
/// `Send`: it cannot be held across an `await`, so it ends before the call's answer
/// takes its ticket.
pub struct WakeLater<'a> {
    committer: &'a Committer,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Opens a [`WakeLater`] scope of the process's committer ([`global`]).
pub fn wake_later() -> WakeLater<'static> {
    global().wake_later()
}

impl Drop for WakeLater<'_> {
    fn drop(&mut self) {
        let wake = WAKE_LATER.with(|held| {
            let (committer, depth, queued) = held.get();
            if depth <= 1 {
                held.set((0, 0, false));
                queued
            } else {
                held.set((committer, depth - 1, queued));
                false
            }
        });
        if wake {
            self.committer.work.notify_one();
        }
    }
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

/// The commit ticket covering every record written so far; `None` when appends are
/// not deferred (each one is then durable before it returns).
pub fn ticket() -> Option<u64> {
    deferring().then(|| global().written())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

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

    /// A research-log file and a journal file, each with its slot.
    fn research_log_and_journal(dir: &std::path::Path) -> [(PathBuf, Arc<Slot>); 2] {
        [
            ("research_log.jsonl", WriteOrder::ResearchLog),
            ("journal.jsonl", WriteOrder::Journal),
        ]
        .map(|(name, order)| {
            let path = dir.join(name);
            let file = File::create(&path).expect("create");
            let slot = Slot::ordered(&file, identity(&file), order).expect("slot");
            (path, slot)
        })
    }

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).expect("read")
    }

    /// A round writes its files in `WriteOrder`, whatever order they were appended
    /// in: a research-log line appended first waits for the journal's, and is not
    /// written while the journal's write fails (a full disk); both are written once
    /// it succeeds.
    ///
    /// Both are appended before the sync thread starts, so that they are in one round:
    /// a running thread could take the first alone (it did, about one run in 30), and
    /// across rounds the order is that of the appends (see `WriteOrder`).
    #[test]
    fn a_round_writes_the_journal_first_and_nothing_after_a_failed_write() {
        let committer = Arc::new(Committer::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let [(log_path, log), (journal_path, journal)] = research_log_and_journal(dir.path());
        journal.disk_full.store(true, Ordering::Release);
        committer.append_behind(&log, b"event\n");
        committer.append_behind(&journal, b"lease\n");
        committer.start().expect("start");
        let err = committer
            .wait_blocking(committer.written())
            .expect_err("the journal cannot be written");
        assert!(err.contains("write failed"), "{err}");
        assert_eq!(
            read(&log_path),
            "",
            "the research log waits for the journal"
        );
        journal.disk_full.store(false, Ordering::Release);
        committer.append_behind(&log, b"more\n");
        committer
            .wait_blocking(committer.written())
            .expect("written once there is space");
        assert_eq!(read(&journal_path), "lease\n");
        assert_eq!(read(&log_path), "event\nmore\n");
    }

    /// Records appended in a `WakeLater` scope are taken by one round, woken when the
    /// scope ends; a blocking wait inside the scope wakes the sync thread itself.
    #[test]
    fn records_appended_in_a_wake_later_scope_go_in_one_round() {
        let committer = Arc::new(Committer::default());
        committer.start().expect("start");
        let dir = tempfile::tempdir().expect("tempdir");
        let [(log_path, log), (journal_path, journal)] = research_log_and_journal(dir.path());
        let rounds = || committer.lock().rounds;
        let before = rounds();
        {
            let _held = committer.wake_later();
            committer.append_behind(&journal, b"stage\n");
            committer.append_behind(&log, b"stage_started\n");
            committer.append_behind(&journal, b"lease\n");
            assert_eq!(
                committer.lock().pending.len(),
                2,
                "nothing woke the sync thread"
            );
        }
        committer
            .wait_blocking(committer.written())
            .expect("written");
        assert_eq!(rounds(), before + 1);
        assert_eq!(read(&journal_path), "stage\nlease\n");
        assert_eq!(read(&log_path), "stage_started\n");
        let _held = committer.wake_later();
        committer.append_behind(&log, b"more\n");
        committer
            .wait_blocking(committer.written())
            .expect("a wait in the scope wakes the sync thread");
        assert_eq!(read(&log_path), "stage_started\nmore\n");
    }

    /// Across rounds: an event appended after the journal record it names, once the
    /// round that was to write that record has failed (a full disk), is in a later
    /// round, and still does not reach the disk before the record, however many
    /// rounds retry them.
    #[test]
    fn an_event_appended_after_a_failed_journal_record_is_never_written_before_it() {
        let committer = Arc::new(Committer::default());
        committer.start().expect("start");
        let dir = tempfile::tempdir().expect("tempdir");
        let [(log_path, log), (journal_path, journal)] = research_log_and_journal(dir.path());
        journal.disk_full.store(true, Ordering::Release);
        committer.append_behind(&journal, b"lease\n");
        let lease = committer.written();
        let err = committer
            .wait_blocking(lease)
            .expect_err("the journal cannot be written");
        assert!(err.contains("write failed"), "{err}");
        committer.append_behind(&log, b"event\n");
        let event = committer.written();
        assert!(event > lease);
        committer
            .wait_blocking(event)
            .expect_err("the lease is retried first and fails again");
        assert_eq!(
            read(&log_path),
            "",
            "the event waits for the lease it names"
        );
        journal.disk_full.store(false, Ordering::Release);
        committer.append_behind(&log, b"more\n");
        committer
            .wait_blocking(committer.written())
            .expect("written once there is space");
        assert_eq!(read(&journal_path), "lease\n");
        assert_eq!(read(&log_path), "event\nmore\n");
    }

    /// A write that fails and cannot be truncated back (/dev/full: ENOSPC, and no
    /// ftruncate on a device) is final: it is not retried, and nothing appended
    /// afterwards is written, not even to a file written before it in a round.
    #[test]
    fn a_torn_write_is_final_and_nothing_is_written_after_it() {
        let committer = Arc::new(Committer::default());
        committer.start().expect("start");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let torn = Slot::ordered(&full, identity(&full), WriteOrder::ResearchLog).expect("slot");
        committer.append_behind(&torn, b"event\n");
        let err = committer
            .wait_blocking(committer.written())
            .expect_err("the write is torn");
        assert!(err.contains("truncating it back failed"), "{err}");
        assert!(committer.failure().is_some());
        assert!(
            committer.lock().pending.is_empty(),
            "the torn write is not queued again"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let [_, (journal_path, journal)] = research_log_and_journal(dir.path());
        committer.append_behind(&journal, b"lease\n");
        committer
            .wait_blocking(committer.written())
            .expect_err("nothing is acknowledged after a final failure");
        // The thread drops a round after a final failure under its lock, in the
        // same step as it takes it: once taken, it is not going to be written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !committer.lock().pending.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the round is taken");
            std::thread::yield_now();
        }
        assert_eq!(read(&journal_path), "", "nothing is written after it");
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
