//! Lease calls waiting for work, and handing queued jobs to them.
//!
//! A lease call that finds nothing to start joins the line of waiting leases, in the
//! same lock that found the queue empty, so a job queued after that check is seen by
//! [`CoordinatorState::hand_to_waiting`]. That runs, under the same lock, wherever
//! jobs become startable (a submission, a requeue, gang ranks placed on another
//! worker): it leases for the waiting calls in the order they began to wait and hands
//! each its leases through a one-shot channel. So a job queued while N workers wait
//! wakes the one call that gets it, not all N (each of which used to take the lock
//! and run the scheduler for one of them to win), and a call that cannot take a job
//! (no free slot, a gang it cannot place) is passed over for the next one rather than
//! leaving the job to the periodic re-check.
//!
//! Invariant: an entry's sender fires at most once, under the state lock, and the
//! entry is removed when it fires; a waiter leaves the line under the same lock, and
//! then either holds its leases or will never get any. Leases whose waiter is gone
//! are requeued at once ([`CoordinatorState::return_undelivered`]).

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::state::lifecycle::JobState;
use crate::state::reports::Lease;
use expcluster_core::WorkerId;
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::oneshot;

/// Leases handed to a waiting call.
pub type Handed = oneshot::Receiver<Vec<Lease>>;

/// One waiting lease call.
#[derive(Debug)]
struct Waiter {
    id: u64,
    worker: WorkerId,
    free_slots: usize,
    handed: oneshot::Sender<Vec<Lease>>,
}

/// The waiting lease calls, oldest first.
#[derive(Debug, Default)]
pub struct LeaseWaiters {
    line: VecDeque<Waiter>,
    next_id: u64,
}

impl LeaseWaiters {
    /// How many calls wait.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }
}

impl CoordinatorState {
    /// Puts a lease call of `worker` (for up to `free_slots` jobs) at the end of the
    /// line; returns its id (for [`Self::stop_waiting`]) and where its leases come.
    pub fn wait_for_lease(&mut self, worker: &WorkerId, free_slots: usize) -> (u64, Handed) {
        let (sender, receiver) = oneshot::channel();
        let id = self.lease_waiters.next_id;
        self.lease_waiters.next_id += 1;
        self.lease_waiters.line.push_back(Waiter {
            id,
            worker: worker.clone(),
            free_slots,
            handed: sender,
        });
        (id, receiver)
    }

    /// Takes the call `id` out of the line (nothing if it was handed leases already).
    pub fn stop_waiting(&mut self, id: u64) {
        if let Some(index) = self.lease_waiters.line.iter().position(|w| w.id == id) {
            self.lease_waiters.line.remove(index);
        }
    }

    /// Leases for the waiting calls, oldest first, while anything may be startable;
    /// returns how many calls were handed leases. A call that gets nothing stays in
    /// line. Once one gets nothing and no job is ready (all in backoff, or none),
    /// only calls with gang ranks placed on their worker are still tried, so the cost
    /// is what is handed out plus one pass over the line, not a scheduler run per
    /// waiting call.
    pub fn hand_to_waiting(&mut self, now: Instant) -> usize {
        use crate::store::group_commit;
        if group_commit::deferring() && group_commit::global().writes_failing().is_some() {
            // No lease could be answered for now: each waiting call re-checks on its
            // own and is told why.
            return 0;
        }
        let mut handed = 0;
        let mut queue_may_start = true;
        let mut ready: Option<bool> = None;
        let mut index = 0;
        while index < self.lease_waiters.line.len() {
            let waiter = &self.lease_waiters.line[index];
            if waiter.handed.is_closed() {
                // Its call was dropped without leaving the line (it cannot be: see the
                // module's invariant), or its receiver went away: nobody to hand to.
                self.lease_waiters.line.remove(index);
                continue;
            }
            let has_ranks = self
                .workers
                .get(&waiter.worker)
                .is_some_and(|record| !record.pending.is_empty());
            if !(has_ranks || queue_may_start) {
                index += 1;
                continue;
            }
            let (worker, free_slots) = (waiter.worker.clone(), waiter.free_slots);
            let leases = match self.lease(&worker, free_slots, now) {
                Ok(leases) => leases,
                Err(CoordinatorError::UnknownWorker(_)) => {
                    // Forgotten since it began to wait: its call wakes, asks for
                    // itself, and is told to register again.
                    self.lease_waiters.line.remove(index);
                    continue;
                }
                Err(err) => {
                    // It stays in line and re-checks on its own.
                    tracing::warn!(%err, worker_id = %worker, "cannot lease for a waiting call");
                    index += 1;
                    continue;
                }
            };
            if leases.is_empty() {
                // Asked once: a ready job nobody could take so far is a gang that
                // does not fit, which a call with more free slots may still place.
                queue_may_start =
                    queue_may_start && *ready.get_or_insert_with(|| self.has_ready_job(now));
                index += 1;
                continue;
            }
            let placed_elsewhere = leases
                .iter()
                .any(|lease| self.jobs.get(&lease.job).is_some_and(|job| job.ranks > 1));
            let Some(waiter) = self.lease_waiters.line.remove(index) else {
                break;
            };
            handed += 1;
            if let Err(leases) = waiter.handed.send(leases) {
                let unsent: Vec<_> = leases.iter().map(|l| (l.job.clone(), l.attempt)).collect();
                if let Err(err) = self.return_undelivered(&unsent) {
                    tracing::error!(%err, "cannot requeue the jobs of a lease nobody waits for; their leases will run out");
                }
            }
            if placed_elsewhere {
                // Ranks of a gang went to other workers: some may wait earlier in line.
                index = 0;
            }
        }
        handed
    }

    /// Whether a queued job is out of its backoff (it may still be a gang that does
    /// not fit).
    fn has_ready_job(&self, now: Instant) -> bool {
        self.queue.iter().any(|id| {
            self.jobs.get(id).is_some_and(|job| match job.state {
                JobState::Queued { not_before } => not_before.is_none_or(|at| at <= now),
                _ => false,
            })
        })
    }
}
