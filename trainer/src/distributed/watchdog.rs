//! The collective watchdog: notices a gang that stopped making progress and aborts its
//! communicator, so a rank whose peer died or went silent stops instead of waiting
//! forever.
//!
//! NCCL collectives run on the GPU's queue: when a peer dies or is cut off, the
//! all-reduce kernel never finishes and the host thread blocks at its next read of a
//! GPU value, where no cancel flag is looked at (the TCP ring polls its sockets and
//! has its own timeout instead). PyTorch's process groups answer this with a
//! watchdog thread, and so does this module: after each collective the rank enqueues
//! a *marker* (a CUDA event) behind it, and a thread polls the markers in order.
//!
//! - **Progress** is the oldest pending marker being passed. A marker starts its
//!   clock when it becomes the oldest one still pending, so a device that is always
//!   busy but always moving never times out, however long the queue.
//! - **Stalled**: the oldest marker stays pending for [`COLLECTIVE_TIMEOUT`] (the TCP
//!   ring's `PEER_TIMEOUT`, the same 60 s for both kinds of gang). A rank asked to
//!   stop while stalled is freed by the same timeout (its cancel flag is read only
//!   between collectives); a rank stopped while its collectives move agrees on the
//!   stop with its peers and checkpoints, as a stop always does.
//! - **Peer error**: NCCL reports an asynchronous error (a peer's socket closed, a
//!   remote error), which ends the wait at once.
//!
//! The abort makes NCCL end the pending kernels, so the blocked host thread returns;
//! the values it read are then worthless, so after an abort every collective, every
//! host read through the gang and every checkpoint fails with
//! [`TrainError::Distributed`] (a lost peer, which spends nothing of the job's
//! failure budget; see docs/data-parallel.md). The pure decision ([`Progress`]) is
//! separate from the thread and the CUDA calls, and is what the unit tests drive.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::tcp_ring::PEER_TIMEOUT;

/// How long the oldest pending collective may wait before the gang counts as stalled.
pub const COLLECTIVE_TIMEOUT: Duration = PEER_TIMEOUT;
/// How often the watchdog looks.
const POLL: Duration = Duration::from_millis(100);

/// A point in a device queue, enqueued behind a collective.
pub trait Marker: Send {
    /// Whether the device has passed it; Err when it cannot be asked.
    fn passed(&self) -> Result<bool, String>;
}

/// Why the watchdog aborted the communicator.
#[derive(Debug, Clone, PartialEq)]
pub enum Abort {
    /// The oldest collective waited `waited` without end.
    Stalled { waited: Duration },
    /// The communicator reported an error of its own (say, a peer's socket closed).
    PeerError(String),
    /// A marker could not be asked about.
    Device(String),
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::Stalled { waited } => write!(
                f,
                "a collective made no progress for {} s: a peer died or cannot be reached (the watchdog aborted the communicator)",
                waited.as_secs()
            ),
            Abort::PeerError(error) => write!(f, "the communicator failed: {error}"),
            Abort::Device(error) => write!(f, "cannot follow the collectives: {error}"),
        }
    }
}

/// The markers still pending, oldest first, and when the oldest became the oldest.
pub struct Progress<M> {
    pending: VecDeque<M>,
    oldest_since: Option<Instant>,
}

impl<M: Marker> Default for Progress<M> {
    fn default() -> Self {
        Progress {
            pending: VecDeque::new(),
            oldest_since: None,
        }
    }
}

impl<M: Marker> Progress<M> {
    /// A collective was enqueued, followed by `marker`.
    pub fn push(&mut self, marker: M, now: Instant) {
        if self.pending.is_empty() {
            self.oldest_since = Some(now);
        }
        self.pending.push_back(marker);
    }

    /// Drops the markers the device has passed (handed back for reuse) and says
    /// whether the oldest one left has waited [`COLLECTIVE_TIMEOUT`].
    pub fn check(&mut self, now: Instant) -> (Vec<M>, Option<Abort>) {
        let mut passed = Vec::new();
        while let Some(oldest) = self.pending.front() {
            match oldest.passed() {
                Ok(true) => {
                    passed.extend(self.pending.pop_front());
                    self.oldest_since = Some(now);
                }
                Ok(false) => break,
                Err(error) => return (passed, Some(Abort::Device(error))),
            }
        }
        let stalled = match (self.pending.is_empty(), self.oldest_since) {
            (false, Some(since)) => now.saturating_duration_since(since) >= COLLECTIVE_TIMEOUT,
            _ => false,
        };
        let verdict = stalled.then_some(Abort::Stalled {
            waited: COLLECTIVE_TIMEOUT,
        });
        (passed, verdict)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// What the rank's thread and the watchdog's thread share.
pub struct Shared<M> {
    progress: Progress<M>,
    /// Markers the device has passed, for reuse.
    spare: Vec<M>,
    aborted: Option<Abort>,
    stop: bool,
}

/// What the watchdog needs of a communicator besides its markers.
pub trait Watched: Send + 'static {
    type Marker: Marker + 'static;
    /// An error the communicator reports on its own, if any.
    fn async_error(&self) -> Option<String>;
    /// Ends every pending collective; called once, with the shared state locked, so
    /// that no collective is enqueued meanwhile.
    fn abort(&mut self);
    /// Binds whatever the polling thread needs (a CUDA context).
    fn enter_thread(&self) {}
}

/// A running watchdog; stopped and joined when dropped.
pub struct Watchdog<W: Watched> {
    shared: Arc<(Mutex<Shared<W::Marker>>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<W: Watched> Watchdog<W> {
    /// Starts watching `watched`.
    pub fn start(mut watched: W) -> Watchdog<W> {
        let shared = Arc::new((
            Mutex::new(Shared {
                progress: Progress::default(),
                spare: Vec::new(),
                aborted: None,
                stop: false,
            }),
            Condvar::new(),
        ));
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("collective-watchdog".into())
                .spawn(move || {
                    watched.enter_thread();
                    let (lock, wake) = &*shared;
                    let mut state = lock_ignoring_poison(lock);
                    while !state.stop && state.aborted.is_none() {
                        state = wake
                            .wait_timeout(state, POLL)
                            .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
                        if state.stop {
                            break;
                        }
                        let (passed, verdict) = state.progress.check(Instant::now());
                        state.spare.extend(passed);
                        let verdict =
                            verdict.or_else(|| watched.async_error().map(Abort::PeerError));
                        if let Some(verdict) = verdict {
                            tracing::warn!(reason = %verdict, "aborting the gang's communicator");
                            watched.abort();
                            state.aborted = Some(verdict);
                        }
                    }
                })
                .expect("spawning the collective watchdog")
        };
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Locks the shared state for enqueuing a collective: Err once aborted. Hold the
    /// guard while the collective and its marker are enqueued, so the abort cannot
    /// free the communicator in between.
    pub fn enqueue(&self) -> Result<Enqueue<'_, W::Marker>, Abort> {
        let state = lock_ignoring_poison(&self.shared.0);
        match &state.aborted {
            Some(abort) => Err(abort.clone()),
            None => Ok(Enqueue { state }),
        }
    }

    /// Err once the communicator was aborted: values read since are not to be used.
    pub fn healthy(&self) -> Result<(), Abort> {
        match &lock_ignoring_poison(&self.shared.0).aborted {
            Some(abort) => Err(abort.clone()),
            None => Ok(()),
        }
    }

    /// Whether the watchdog aborted the communicator (so it must not be destroyed).
    pub fn aborted(&self) -> bool {
        self.healthy().is_err()
    }
}

/// The shared state, locked while a collective is enqueued.
pub struct Enqueue<'a, M> {
    state: MutexGuard<'a, Shared<M>>,
}

impl<M: Marker> Enqueue<'_, M> {
    /// A marker the device has passed, to reuse, if any.
    pub fn spare(&mut self) -> Option<M> {
        self.state.spare.pop()
    }

    /// Follows `marker`, enqueued behind the collective.
    pub fn follow(mut self, marker: M) {
        self.state.progress.push(marker, Instant::now());
    }
}

impl<W: Watched> Drop for Watchdog<W> {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.shared.0).stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock_ignoring_poison<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A marker the test passes by hand.
    #[derive(Clone)]
    struct Flag(Arc<AtomicBool>);

    impl Flag {
        fn new() -> Flag {
            Flag(Arc::new(AtomicBool::new(false)))
        }
        fn pass(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Marker for Flag {
        fn passed(&self) -> Result<bool, String> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    struct Broken;

    impl Marker for Broken {
        fn passed(&self) -> Result<bool, String> {
            Err("an illegal address was encountered".into())
        }
    }

    #[test]
    fn a_busy_queue_that_keeps_moving_never_stalls() {
        let start = Instant::now();
        let mut progress = Progress::default();
        let mut markers: VecDeque<Flag> = VecDeque::new();
        // 16 collectives queued at once, then for 10 minutes the device passes the
        // oldest every 50 s while the host enqueues one more: never empty, always moving.
        for _ in 0..16 {
            let marker = Flag::new();
            markers.push_back(marker.clone());
            progress.push(marker, start);
        }
        for step in 1..=12u64 {
            let now = start + Duration::from_secs(50 * step);
            markers.pop_front().expect("a marker").pass();
            let marker = Flag::new();
            markers.push_back(marker.clone());
            progress.push(marker, now);
            let (passed, verdict) = progress.check(now);
            assert_eq!((passed.len(), verdict), (1, None), "at {} s", 50 * step);
        }
        assert_eq!(progress.pending(), 16);
    }

    #[test]
    fn the_oldest_collective_stalls_after_the_timeout_however_many_follow() {
        let start = Instant::now();
        let mut progress = Progress::default();
        let first = Flag::new();
        progress.push(first.clone(), start);
        // Later collectives do not reset the clock of the one that hangs.
        for second in 1..60 {
            progress.push(Flag::new(), start + Duration::from_secs(second));
        }
        let just_before = start + COLLECTIVE_TIMEOUT - Duration::from_millis(1);
        assert_eq!(progress.check(just_before).1, None);
        assert_eq!(
            progress.check(start + COLLECTIVE_TIMEOUT).1,
            Some(Abort::Stalled {
                waited: COLLECTIVE_TIMEOUT
            })
        );
    }

    #[test]
    fn the_clock_starts_when_a_marker_becomes_the_oldest() {
        let start = Instant::now();
        let mut progress = Progress::default();
        let (first, second) = (Flag::new(), Flag::new());
        progress.push(first.clone(), start);
        progress.push(second.clone(), start);
        first.pass();
        // The first passed at 50 s: the second has waited 50 s, not 100 s, at 100 s.
        let (passed, verdict) = progress.check(start + Duration::from_secs(50));
        assert_eq!((passed.len(), verdict), (1, None));
        assert_eq!(progress.check(start + Duration::from_secs(100)).1, None);
        assert!(progress.check(start + Duration::from_secs(110)).1.is_some());
        // An empty queue is never stalled.
        second.pass();
        let (passed, verdict) = progress.check(start + Duration::from_secs(500));
        assert_eq!((passed.len(), verdict, progress.pending()), (1, None, 0));
    }

    #[test]
    fn a_marker_that_cannot_be_asked_aborts() {
        let mut progress = Progress::default();
        progress.push(Broken, Instant::now());
        assert!(matches!(
            progress.check(Instant::now()).1,
            Some(Abort::Device(_))
        ));
    }

    /// A communicator that counts its aborts and may report an error.
    struct FakeComm {
        error: Arc<Mutex<Option<String>>>,
        aborts: Arc<AtomicUsize>,
    }

    impl Watched for FakeComm {
        type Marker = Flag;
        fn async_error(&self) -> Option<String> {
            lock_ignoring_poison(&self.error).clone()
        }
        fn abort(&mut self) {
            self.aborts.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen in 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_thread_aborts_once_on_a_peer_error_and_refuses_later_collectives() {
        let error = Arc::new(Mutex::new(None));
        let aborts = Arc::new(AtomicUsize::new(0));
        let watchdog = Watchdog::start(FakeComm {
            error: error.clone(),
            aborts: aborts.clone(),
        });
        let marker = Flag::new();
        watchdog.enqueue().expect("healthy").follow(marker.clone());
        marker.pass();
        // The passed marker comes back for reuse, and nothing is aborted.
        wait_until("the marker's reuse", || {
            watchdog.enqueue().expect("healthy").spare().is_some()
        });
        assert_eq!(aborts.load(Ordering::SeqCst), 0);
        *lock_ignoring_poison(&error) = Some("remote process exited".into());
        wait_until("the abort", || watchdog.aborted());
        assert_eq!(aborts.load(Ordering::SeqCst), 1);
        let refused = watchdog.enqueue().err().expect("refused after the abort");
        assert_eq!(refused, Abort::PeerError("remote process exited".into()));
        assert!(refused.to_string().contains("remote process exited"));
        drop(watchdog);
        assert_eq!(aborts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_the_watchdog_stops_its_thread_without_an_abort() {
        let aborts = Arc::new(AtomicUsize::new(0));
        let watchdog = Watchdog::start(FakeComm {
            error: Arc::new(Mutex::new(None)),
            aborts: aborts.clone(),
        });
        // Pending, far from stalled: dropping it ends the thread at once, no abort.
        watchdog.enqueue().expect("healthy").follow(Flag::new());
        let dropped = Instant::now();
        drop(watchdog);
        assert!(dropped.elapsed() < COLLECTIVE_TIMEOUT);
        assert_eq!(aborts.load(Ordering::SeqCst), 0);
    }
}
