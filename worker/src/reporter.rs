//! Streams an attempt's metric points to the coordinator as they are produced.
//!
//! Points get a per-attempt sequence number and a per-metric step here, then go out in
//! batches of whatever has accumulated (so a job printing slowly streams point by
//! point, and a fast one is batched). A point stays pending until the coordinator
//! acknowledges it; failed sends are retried, and the coordinator skips resends it
//! has already stored, so each point is stored exactly once.

use crate::client::{is_retryable, WorkerClient};
use expcluster_proto::v1;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 4096;

/// The sending side, cheap to clone; usable from blocking threads.
#[derive(Clone)]
pub struct MetricSender {
    tx: mpsc::UnboundedSender<(String, f64)>,
}

impl MetricSender {
    pub fn send(&self, name: &str, value: f64) {
        // A closed channel means the attempt is over; late points are dropped.
        let _ = self.tx.send((name.to_owned(), value));
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
pub fn start(
    client: WorkerClient,
    worker_id: String,
    job_id: String,
    attempt: u32,
) -> (MetricSender, tokio::task::JoinHandle<ReportEnd>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(client, worker_id, job_id, attempt, rx));
    (MetricSender { tx }, handle)
}

async fn run(
    mut client: WorkerClient,
    worker_id: String,
    job_id: String,
    attempt: u32,
    mut rx: mpsc::UnboundedReceiver<(String, f64)>,
) -> ReportEnd {
    let mut pending: VecDeque<v1::MetricPoint> = VecDeque::new();
    let mut steps: HashMap<String, u64> = HashMap::new();
    let mut next_seq = 0u64;
    let mut open = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_empty() {
            if !open {
                return ReportEnd::AllAcked(next_seq);
            }
            match rx.recv().await {
                Some(point) => push(&mut pending, &mut steps, &mut next_seq, point),
                None => open = false,
            }
        }
        while let Ok(point) = rx.try_recv() {
            push(&mut pending, &mut steps, &mut next_seq, point);
        }
        if pending.is_empty() {
            continue;
        }
        let batch = v1::MetricBatch {
            worker_id: worker_id.clone(),
            job_id: job_id.clone(),
            attempt,
            points: pending.iter().take(MAX_BATCH).cloned().collect(),
        };
        match client.report_metrics(batch).await {
            Ok(ack) => {
                let acked = ack.into_inner().acked_through;
                while pending.front().is_some_and(|p| p.seq < acked) {
                    pending.pop_front();
                }
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

fn push(
    pending: &mut VecDeque<v1::MetricPoint>,
    steps: &mut HashMap<String, u64>,
    next_seq: &mut u64,
    (name, value): (String, f64),
) {
    let step = steps.entry(name.clone()).or_insert(0);
    pending.push_back(v1::MetricPoint {
        seq: *next_seq,
        name,
        step: *step,
        value,
        time_ms: chrono_free_now_ms(),
    });
    *step += 1;
    *next_seq += 1;
}

fn chrono_free_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
