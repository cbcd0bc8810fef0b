//! Streams an attempt's metric points to the coordinator as they are produced.
//!
//! Points get a per-attempt sequence number and a per-metric step here, then go out in
//! batches of whatever has accumulated (so a job printing slowly streams point by
//! point, and a fast one is batched). A point stays pending until the coordinator
//! acknowledges it; failed sends are retried, and the coordinator skips resends it
//! has already stored, so each point is stored exactly once.

use crate::client::{is_retryable, WorkerClient};
use crate::spool::{Reopened, Spool};
use expcluster_proto::v1;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 4096;

/// A point as the job produced it, before it is numbered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Produced {
    pub(crate) name: String,
    pub(crate) value: f64,
    /// Where its stdout line ends, for a point read from a command's stdout.
    pub(crate) stdout_end: Option<u64>,
}

/// The sending side, cheap to clone; usable from blocking threads.
#[derive(Clone)]
pub struct MetricSender {
    tx: mpsc::UnboundedSender<Produced>,
}

impl MetricSender {
    /// A sender whose points go nowhere (the ranks of a gang other than rank 0).
    pub fn discarding() -> Self {
        let (tx, _) = mpsc::unbounded_channel();
        Self { tx }
    }

    pub fn send(&self, name: &str, value: f64) {
        // A closed channel means the attempt is over; late points are dropped.
        let _ = self.tx.send(Produced {
            name: name.to_owned(),
            value,
            stdout_end: None,
        });
    }

    /// A sender whose points the test reads from the receiver.
    #[cfg(test)]
    pub(crate) fn capturing() -> (Self, mpsc::UnboundedReceiver<Produced>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// A point read from a command's stdout, from the line that ends at `line_end`.
    pub fn send_from_stdout(&self, name: &str, value: f64, line_end: u64) {
        let _ = self.tx.send(Produced {
            name: name.to_owned(),
            value,
            stdout_end: Some(line_end),
        });
    }
}

/// How the reporter ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportEnd {
    /// Every point was acknowledged; this many were produced.
    AllAcked(u64),
    /// The coordinator refused the attempt (superseded or unknown): stop the job.
    Refused(String),
}

/// Starts the reporter task for one attempt.
///
/// Points are spooled to `spool_path` (the job's directory) until acknowledged; see
/// [`crate::spool`]. If the spool cannot be created the points are kept in memory
/// only, with a warning.
pub fn start(
    client: WorkerClient,
    worker_id: String,
    job_id: String,
    attempt: u32,
    spool_path: &std::path::Path,
) -> (MetricSender, tokio::task::JoinHandle<ReportEnd>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let spool = match Spool::create(spool_path, MEMORY_CAP) {
        Ok(spool) => Some(spool),
        Err(err) => {
            tracing::warn!(%job_id, %err, path = %spool_path.display(), "no local metric spool; keeping points in memory");
            None
        }
    };
    let queue = Queue {
        pending: VecDeque::new(),
        steps: HashMap::new(),
        next_seq: 0,
        spool,
    };
    let handle = tokio::spawn(run(client, worker_id, job_id, attempt, rx, queue));
    (MetricSender { tx }, handle)
}

/// Starts the reporter of an attempt taken over from a previous worker on this work
/// dir, from the spool it left: every point in it is sent again (the coordinator
/// skips those it has), and new points are numbered on from the last.
pub fn resume(
    client: WorkerClient,
    worker_id: String,
    job_id: String,
    attempt: u32,
    reopened: Reopened,
) -> (MetricSender, tokio::task::JoinHandle<ReportEnd>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Queue {
        pending: VecDeque::new(),
        steps: reopened.steps,
        next_seq: reopened.next_seq,
        spool: Some(reopened.spool),
    };
    let handle = tokio::spawn(run(client, worker_id, job_id, attempt, rx, queue));
    (MetricSender { tx }, handle)
}

/// Pending points held in memory; more wait in the spool on disk.
pub(crate) const MEMORY_CAP: usize = 100_000;

/// Sequence numbering plus the spool: where a new point goes.
struct Queue {
    pending: VecDeque<v1::MetricPoint>,
    steps: HashMap<String, u64>,
    next_seq: u64,
    spool: Option<Spool>,
}

impl Queue {
    fn push(
        &mut self,
        Produced {
            name,
            value,
            stdout_end,
        }: Produced,
    ) {
        let step = self.steps.entry(name.clone()).or_insert(0);
        let point = v1::MetricPoint {
            seq: self.next_seq,
            name,
            step: *step,
            value,
            time_ms: unix_time_ms(),
        };
        *step += 1;
        self.next_seq += 1;
        match self.spool.as_mut() {
            Some(spool) => {
                if let Err(err) = spool.push(point.clone(), stdout_end, &mut self.pending) {
                    // Disk trouble on the worker: load what waits on disk (keeping the
                    // order), stop spooling, and keep points in memory from now on.
                    // The spool no longer holds every point, so it goes: a worker
                    // restarted here must not carry the attempt on from it.
                    tracing::warn!(%err, "metric spool failed; keeping points in memory");
                    if let Err(err) = spool.drain_all(&mut self.pending) {
                        tracing::error!(%err, "cannot read the metric spool back");
                    }
                    if let Some(spool) = self.spool.take() {
                        spool.abandon();
                    }
                    self.pending.push_back(point);
                }
            }
            None => self.pending.push_back(point),
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.spool.as_ref().is_none_or(|s| s.waiting_on_disk() == 0)
    }

    /// Drops the points below `acked` and loads more from disk; a resumed spool's
    /// points the coordinator already had are skipped in one go.
    fn acknowledge(&mut self, acked: u64) {
        loop {
            while self.pending.front().is_some_and(|p| p.seq < acked) {
                self.pending.pop_front();
            }
            let Some(spool) = self.spool.as_mut() else {
                return;
            };
            let waiting = spool.waiting_on_disk();
            if let Err(err) = spool.refill(&mut self.pending) {
                tracing::error!(%err, "cannot read the metric spool back");
                return;
            }
            let loaded = spool.waiting_on_disk() < waiting;
            if !loaded || self.pending.front().is_none_or(|p| p.seq >= acked) {
                return;
            }
        }
    }
}

async fn run(
    mut client: WorkerClient,
    worker_id: String,
    job_id: String,
    attempt: u32,
    mut rx: mpsc::UnboundedReceiver<Produced>,
    mut queue: Queue,
) -> ReportEnd {
    let mut open = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        if queue.is_empty() {
            if !open {
                return ReportEnd::AllAcked(queue.next_seq);
            }
            match rx.recv().await {
                Some(point) => queue.push(point),
                None => open = false,
            }
        }
        while let Ok(point) = rx.try_recv() {
            queue.push(point);
        }
        if queue.pending.is_empty() {
            queue.acknowledge(0);
            continue;
        }
        let batch = v1::MetricBatch {
            worker_id: worker_id.clone(),
            job_id: job_id.clone(),
            attempt,
            points: queue.pending.iter().take(MAX_BATCH).cloned().collect(),
        };
        match client.report_metrics(batch).await {
            Ok(ack) => {
                queue.acknowledge(ack.into_inner().acked_through);
                backoff = Duration::from_millis(100);
            }
            Err(status) if is_retryable(&status) => {
                tracing::warn!(%job_id, attempt, %status, "metric batch not acknowledged; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(status) => return ReportEnd::Refused(status.message().to_owned()),
        }
    }
}

fn unix_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
