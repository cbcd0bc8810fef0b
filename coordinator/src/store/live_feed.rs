//! The coordinator's live feed: what the dashboard (and any other in-process
//! watcher) shows as it happens, without polling files.
//!
//! Published where the coordinator already handles each thing, under the state lock:
//! metric points as they are stored ([`CoordinatorState::report_prepared`]), pieces of
//! a running job's log ([`CoordinatorState::append_log`]), leases, and every research
//! log event (job ends, requeues, stage ends, claim verdicts, idea updates). The feed
//! is a bounded `tokio::sync::broadcast`: sending never blocks or allocates per
//! subscriber, and a subscriber that falls behind loses the oldest items (it is told
//! how many, and resyncs from a snapshot, [`crate::service::snapshot`]). With no subscriber,
//! publishing is one atomic load: nothing is built.
//!
//! [`CoordinatorState::report_prepared`]: crate::ops::CoordinatorState::report_prepared
//! [`CoordinatorState::append_log`]: crate::ops::CoordinatorState::append_log

use expcluster_core::{AttemptNumber, JobId};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Items a subscriber may fall behind by before it loses the oldest (a watcher
/// drains the feed several times a second; each item holds at most
/// [`BATCH_POINTS`] points).
pub const FEED_CAPACITY: usize = 1024;

/// The most points of one stored batch the feed carries. A worker's batch can hold
/// thousands of points; a watcher draws a curve, for which a sample is as good, and
/// building it under the state lock must cost next to nothing. The store keeps
/// every point: a watcher's snapshot has them all.
pub const BATCH_POINTS: usize = 64;

/// At most `cap` of `items`, by an even stride that keeps the last one.
pub fn sample<T>(items: &[T], cap: usize) -> impl Iterator<Item = &T> {
    sample_indices(items.len(), cap).map(move |index| &items[index])
}

/// The indices [`sample`] keeps of `len` items.
pub fn sample_indices(len: usize, cap: usize) -> impl Iterator<Item = usize> {
    let stride = len.div_ceil(cap.max(1)).max(1);
    let first = (len + stride - 1) % stride;
    (first..len).step_by(stride)
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// Points of a job's attempt, just stored, sampled to [`BATCH_POINTS`] (a resent
    /// point may come twice: the first value of a step is the one kept).
    Metrics(Arc<MetricPoints>),
    /// A piece of a running attempt's stdout, stderr or worker log.
    Log(Arc<LogPiece>),
    /// Jobs were leased to a worker (they run now).
    Leased(Arc<Vec<JobId>>),
    /// A research-log event was written: `payload` is its JSON object.
    Logged(Arc<LoggedEvent>),
}

/// A batch's stored points, compact: a batch names a metric or two, so each point
/// refers to its name by index instead of carrying a copy of it (this is built under
/// the state lock).
#[derive(Debug)]
pub struct MetricPoints {
    pub job: JobId,
    pub attempt: AttemptNumber,
    pub names: Vec<String>,
    /// (index in `names`, step, value)
    pub points: Vec<(u32, u64, f64)>,
}

impl MetricPoints {
    /// Gathers an even sample of at most [`BATCH_POINTS`] of `items` (the last one
    /// always), each read as `(name, step, value)` by `point`: what the feed carries
    /// of a stored batch.
    pub fn sampled<'a, T>(
        job: &JobId,
        attempt: AttemptNumber,
        items: &[T],
        point: impl Fn(&T) -> (&'a str, u64, f64),
    ) -> Self {
        Self::gather(job, attempt, sample(items, BATCH_POINTS).map(point))
    }

    /// Gathers `(name, step, value)` points.
    pub fn gather<'a>(
        job: &JobId,
        attempt: AttemptNumber,
        points: impl Iterator<Item = (&'a str, u64, f64)>,
    ) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut gathered = Vec::with_capacity(points.size_hint().0);
        for (name, step, value) in points {
            let index = match names.iter().position(|known| known == name) {
                Some(index) => index,
                None => {
                    names.push(name.to_owned());
                    names.len() - 1
                }
            };
            gathered.push((index as u32, step, value));
        }
        Self {
            job: job.clone(),
            attempt,
            names,
            points: gathered,
        }
    }
}

#[derive(Debug)]
pub struct LogPiece {
    pub job: JobId,
    pub attempt: AttemptNumber,
    pub stream: String,
    /// Where `content` starts in the attempt's log.
    pub offset: u64,
    pub content: Vec<u8>,
}

#[derive(Debug)]
pub struct LoggedEvent {
    pub seq: u64,
    pub event_type: String,
    pub payload: String,
}

/// The sending side, owned by the coordinator's state.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<LiveEvent>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl LiveFeed {
    /// A new subscriber, which sees what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.sender.subscribe()
    }

    /// Whether anyone listens: publishers build nothing when nobody does.
    pub fn active(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Publishes `make()` if anyone listens. Never blocks: a slow subscriber loses
    /// the oldest items instead.
    pub fn publish(&self, make: impl FnOnce() -> LiveEvent) {
        if self.active() {
            // An error means the last subscriber left meanwhile: nothing to do.
            let _ = self.sender.send(make());
        }
    }
}
