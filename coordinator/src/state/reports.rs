//! What workers report and what they are handed: metric points, how an attempt
//! ended, and leases. Plain data shared by the state machine, the store and the
//! service.

use expcluster_core::{AttemptNumber, JobId};

/// One metric point as received.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub seq: u64,
    pub name: String,
    pub step: u64,
    pub value: f64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Preempted,
    Cancelled,
    /// A gang rank stopped because a peer was lost (see [`crate::ops::gang`]); for a job
    /// that is no gang it counts as a failure.
    PeerLost,
}

/// The parts of a completion that must match for a replay to get the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionKey {
    pub outcome: Outcome,
    pub exit_code: i32,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub outcome: Outcome,
    pub exit_code: i32,
    pub error: String,
    pub stderr_tail: String,
    pub metric_count: u64,
    pub duration_s: f64,
    /// Which rank of a gang ended (0 for an ordinary job).
    pub rank: u32,
}

/// A job (or one rank of a data-parallel job) handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: JobId,
    pub attempt: AttemptNumber,
    /// The rank within the job's gang (0 for an ordinary job).
    pub rank: u32,
}
