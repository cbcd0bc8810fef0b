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

/// Items a subscriber may fall behind by before it loses the oldest.
pub const FEED_CAPACITY: usize = 4096;

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// Points of a job's attempt, just stored (a resent point may come twice: the
    /// first value of a step is the one kept).
    Metrics(Arc<MetricPoints>),
    /// A piece of a running attempt's stdout, stderr or worker log.
    Log(Arc<LogPiece>),
    /// Jobs were leased to a worker (they run now).
    Leased(Arc<Vec<JobId>>),
    /// A research-log event was written: `payload` is its JSON object.
    Logged(Arc<LoggedEvent>),
}

#[derive(Debug)]
pub struct MetricPoints {
    pub job: JobId,
    pub attempt: AttemptNumber,
    /// (name, step, value)
    pub points: Vec<(String, u64, f64)>,
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
