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

impl JobState {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn states(now: Instant) -> Vec<JobState> {
        vec![
            JobState::Queued { not_before: None },
            JobState::Running {
                worker: WorkerId("w".into()),
                attempt: 1,
                lease_deadline: now,
            },
            JobState::Succeeded { attempt: 1 },
            JobState::Failed { reason: "x".into() },
            JobState::Cancelled,
        ]
    }

    fn events(now: Instant) -> Vec<JobEvent> {
        vec![
            JobEvent::Leased {
                worker: WorkerId("w".into()),
                attempt: 2,
                lease_deadline: now,
            },
            JobEvent::Renewed {
                lease_deadline: now,
            },
            JobEvent::Reattached {
                worker: WorkerId("w2".into()),
                lease_deadline: now,
            },
            JobEvent::Succeeded,
            JobEvent::AttemptFailed {
                reason: "r".into(),
                retry_at: Some(now),
            },
            JobEvent::AttemptFailed {
                reason: "r".into(),
                retry_at: None,
            },
            JobEvent::Interrupted,
            JobEvent::Cancel,
        ]
    }

    /// Every (state, event) pair, with the expected resulting state name or refusal.
    #[test]
    fn transition_table_covers_every_pair() {
        let now = Instant::now();
        let expected: [[Option<&str>; 8]; 5] = [
            // leased, renewed, reattached, succeeded, failed+retry, failed final,
            // interrupted, cancel
            [
                Some("running"),
                None,
                None,
                None,
                None,
                None,
                None,
                Some("cancelled"),
            ],
            [
                None,
                Some("running"),
                Some("running"),
                Some("succeeded"),
                Some("queued"),
                Some("failed"),
                Some("queued"),
                Some("cancelled"),
            ],
            [None, None, None, None, None, None, None, None],
            [None, None, None, None, None, None, None, None],
            [None, None, None, None, None, None, None, None],
        ];
        for (state, row) in states(now).iter().zip(expected) {
            for (event, want) in events(now).into_iter().zip(row) {
                let got = state.apply(event.clone()).ok().map(|next| next.name());
                assert_eq!(got, want, "{} + {}", state.name(), event.name());
            }
        }
    }

    #[test]
    fn a_reattached_attempt_keeps_its_number_under_the_new_worker() {
        let now = Instant::now();
        let running = JobState::Running {
            worker: WorkerId("w1".into()),
            attempt: 3,
            lease_deadline: now,
        };
        let later = now + Duration::from_secs(5);
        let moved = running
            .apply(JobEvent::Reattached {
                worker: WorkerId("w2".into()),
                lease_deadline: later,
            })
            .expect("a running attempt can be reattached");
        assert_eq!(
            moved,
            JobState::Running {
                worker: WorkerId("w2".into()),
                attempt: 3,
                lease_deadline: later,
            }
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(retry_backoff(1), Duration::from_millis(500));
        assert_eq!(retry_backoff(2), Duration::from_secs(1));
        assert_eq!(retry_backoff(3), Duration::from_secs(2));
        assert_eq!(retry_backoff(50), Duration::from_secs(60));
    }
}
