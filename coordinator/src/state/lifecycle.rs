//! The job lifecycle as an explicit state machine (pure: no I/O, time is passed in).
//!
//! ```text
//!   Queued ──lease──▶ Running ──succeeded──▶ Succeeded
//!     ▲                 │ ⟲ renewed; reattached (its worker restarted: same attempt,
//!     │                 │   new worker id)
//!     ▲                 │ failed (budget left) / lost / preempted
//!     └─────────────────┘
//!                       │ failed (budget spent) ──▶ Failed
//!   Queued | Running ──cancel──▶ Cancelled
//! ```
//! Failures spend the retry budget; lost workers and preemptions do not (they are
//! not the job's fault), so a flaky node cannot fail a healthy job.

use expcluster_core::{AttemptNumber, WorkerId};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Queued {
        /// Retry backoff: not leased before this instant.
        not_before: Option<Instant>,
    },
    Running {
        worker: WorkerId,
        attempt: AttemptNumber,
        lease_deadline: Instant,
    },
    Succeeded {
        attempt: AttemptNumber,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    Leased {
        worker: WorkerId,
        attempt: AttemptNumber,
        lease_deadline: Instant,
    },
    Renewed {
        lease_deadline: Instant,
    },
    /// The attempt's worker restarted on the same node and still holds it: the same
    /// attempt carries on under the new incarnation's worker id.
    Reattached {
        worker: WorkerId,
        lease_deadline: Instant,
    },
    Succeeded,
    /// The attempt failed; `retry_at` is set when the budget allows another attempt.
    AttemptFailed {
        reason: String,
        retry_at: Option<Instant>,
    },
    /// The worker vanished or was preempted: requeue without spending the budget.
    Interrupted,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job in state {state} cannot take event {event}")]
pub struct TransitionError {
    pub state: &'static str,
    pub event: &'static str,
}

/// Whether a report about `attempt` from `worker` may change the job (see
/// [`JobState::fence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// The attempt is running and leased to that worker.
    Current,
    /// The attempt is running but leased to another worker.
    HeldElsewhere,
    /// The attempt is over (superseded, finished, or never started).
    Over,
}

impl JobState {
    /// Fences a report about `attempt` from `worker`: only the attempt currently
    /// leased to that worker may write, so a superseded attempt (a worker stopped past
    /// its lease, then resumed) cannot add to or finish a job that moved on.
    pub fn fence(&self, worker: &WorkerId, attempt: AttemptNumber) -> Fence {
        match self {
            JobState::Running {
                worker: holder,
                attempt: current,
                ..
            } if *current == attempt => {
                if holder == worker {
                    Fence::Current
                } else {
                    Fence::HeldElsewhere
                }
            }
            _ => Fence::Over,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued { .. } => "queued",
            JobState::Running { .. } => "running",
            JobState::Succeeded { .. } => "succeeded",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        match self {
            JobState::Succeeded { .. } | JobState::Failed { .. } | JobState::Cancelled => true,
            JobState::Queued { .. } | JobState::Running { .. } => false,
        }
    }

    /// The next state, or an error when the event does not apply.
    pub fn apply(&self, event: JobEvent) -> Result<JobState, TransitionError> {
        let refuse = |state: &JobState, event: &JobEvent| TransitionError {
            state: state.name(),
            event: event.name(),
        };
        match (self, event) {
            (
                JobState::Queued { .. },
                JobEvent::Leased {
                    worker,
                    attempt,
                    lease_deadline,
                },
            ) => Ok(JobState::Running {
                worker,
                attempt,
                lease_deadline,
            }),
            (
                JobState::Running {
                    worker, attempt, ..
                },
                JobEvent::Renewed { lease_deadline },
            ) => Ok(JobState::Running {
                worker: worker.clone(),
                attempt: *attempt,
                lease_deadline,
            }),
            (
                JobState::Running { attempt, .. },
                JobEvent::Reattached {
                    worker,
                    lease_deadline,
                },
            ) => Ok(JobState::Running {
                worker,
                attempt: *attempt,
                lease_deadline,
            }),
            (JobState::Running { attempt, .. }, JobEvent::Succeeded) => {
                Ok(JobState::Succeeded { attempt: *attempt })
            }
            (
                JobState::Running { .. },
                JobEvent::AttemptFailed {
                    retry_at: Some(at), ..
                },
            ) => Ok(JobState::Queued {
                not_before: Some(at),
            }),
            (
                JobState::Running { .. },
                JobEvent::AttemptFailed {
                    reason,
                    retry_at: None,
                },
            ) => Ok(JobState::Failed { reason }),
            (JobState::Running { .. }, JobEvent::Interrupted) => {
                Ok(JobState::Queued { not_before: None })
            }
            (JobState::Queued { .. } | JobState::Running { .. }, JobEvent::Cancel) => {
                Ok(JobState::Cancelled)
            }
            (
                state @ JobState::Queued { .. },
                event @ (JobEvent::Renewed { .. }
                | JobEvent::Reattached { .. }
                | JobEvent::Succeeded
                | JobEvent::AttemptFailed { .. }
                | JobEvent::Interrupted),
            )
            | (state @ JobState::Running { .. }, event @ JobEvent::Leased { .. })
            | (
                state
                @ (JobState::Succeeded { .. } | JobState::Failed { .. } | JobState::Cancelled),
                event,
            ) => Err(refuse(state, &event)),
        }
    }
}

impl JobEvent {
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Leased { .. } => "leased",
            JobEvent::Renewed { .. } => "renewed",
            JobEvent::Reattached { .. } => "reattached",
            JobEvent::Succeeded => "succeeded",
            JobEvent::AttemptFailed { .. } => "attempt_failed",
            JobEvent::Interrupted => "interrupted",
            JobEvent::Cancel => "cancel",
        }
    }
}

/// Backoff before retry `failures` (1-based): 0.5 s, 1 s, 2 s, … capped at 60 s.
pub fn retry_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(7);
    Duration::from_millis(500u64 << exponent).min(Duration::from_secs(60))
}
