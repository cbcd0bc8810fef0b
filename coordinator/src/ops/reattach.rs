//! A worker restarted on the same node carries on the attempts its previous
//! incarnation left running, instead of their being requeued.
//!
//! The worker keeps, in its work dir, the id it was given and a record of each command
//! attempt's process. Started again on that work dir (which it holds locked, so the
//! previous incarnation is known to be dead), it registers naming the previous id and
//! the attempts whose processes it found. The coordinator then:
//!
//! - moves each named attempt that still runs under the previous id (same job, same
//!   attempt number, not a gang) to the new id: the same attempt, its points and its
//!   sequence numbers carry on, nothing is requeued and no budget is spent;
//! - requeues every other attempt of the previous incarnation at once (`job_requeued`,
//!   reason `worker_restarted`): a trainer job, which ran inside the dead process, or a
//!   gang, whose ring broke with it. They do not wait for their lease to run out, and
//!   a requeue spends no failure budget;
//! - retires the previous id: its record is dropped, so a stale call made with it is
//!   refused as from an unknown worker.
//!
//! The fence is the (job, attempt) pair plus the previous id, which only that worker
//! was told (the ids carry a random part). The move is journaled (`reattach`) before
//! it is answered, so a coordinator restarted later knows the attempt's holder
//! ([`recovered`]). A registration retried after its answer was lost finds the
//! previous id retired and gets the first answer again.

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::state::lifecycle::{JobEvent, JobState};
use expcluster_core::{AttemptNumber, JobId, WorkerId};
use serde_json::{json, Value};
use std::time::Instant;

/// The most attempts one registration may name (a worker runs one per slot).
pub const MAX_HELD_ATTEMPTS: usize = 65_536;

/// A registration's claim to be a worker restarted on the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The id the previous worker on that node was given.
    pub previous: WorkerId,
    /// Its attempts whose processes the new worker found.
    pub held: Vec<(JobId, AttemptNumber)>,
}

/// What a registration of a restarted worker got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub worker: WorkerId,
    /// The named attempts now leased to `worker`; it must stop the others.
    pub reattached: Vec<(JobId, AttemptNumber)>,
    /// Attempts of the previous incarnation put back in the queue.
    pub requeued: usize,
}

impl CoordinatorState {
    /// Registers a worker: a fresh one, or one restarted on the node of
    /// `restart.previous`.
    pub fn register(
        &mut self,
        hostname: &str,
        slots: u32,
        restart: Option<&Restart>,
        now: Instant,
    ) -> Result<Registration, CoordinatorError> {
        match restart {
            None => Ok(Registration {
                worker: self.register_worker(hostname, slots, now)?,
                reattached: Vec::new(),
                requeued: 0,
            }),
            Some(restart) => self.register_restarted_worker(hostname, slots, restart, now),
        }
    }

    /// Registers a worker restarted on the node of `restart.previous`.
    pub fn register_restarted_worker(
        &mut self,
        hostname: &str,
        slots: u32,
        restart: &Restart,
        now: Instant,
    ) -> Result<Registration, CoordinatorError> {
        let Restart { previous, held } = restart;
        if held.len() > MAX_HELD_ATTEMPTS {
            return Err(CoordinatorError::InvalidRequest(format!(
                "a registration names {} held attempts, more than the {MAX_HELD_ATTEMPTS} allowed",
                held.len()
            )));
        }
        if let Some(successor) = self.retired_workers.get(previous).cloned() {
            if self.workers.contains_key(&successor) {
                // A retry of a registration already applied.
                let reattached = self.running_under(&successor, held);
                return Ok(Registration {
                    worker: successor,
                    reattached,
                    requeued: 0,
                });
            }
        }
        let worker = self.register_worker(hostname, slots, now)?;
        if !self.workers.contains_key(previous) {
            // Never known here, or forgotten after many silent leases: its attempts
            // were requeued long ago.
            return Ok(Registration {
                worker,
                reattached: Vec::new(),
                requeued: 0,
            });
        }
        let reattached = self.running_under(previous, held);
        let attempts: Vec<Value> = reattached
            .iter()
            .filter_map(|(job_id, attempt)| {
                let stage_run = self.jobs.get(job_id)?.stage_run;
                Some(json!({"job_id": job_id, "attempt": attempt, "stage_run": stage_run}))
            })
            .collect();
        // Durable before anything changes: a restarted coordinator must know who
        // holds these attempts.
        self.journal_record(
            "reattach",
            json!({"worker_id": worker.0, "previous_worker_id": previous.0, "attempts": attempts}),
        )?;
        let deadline = now + self.settings.lease_timeout;
        for (job_id, _) in &reattached {
            self.move_attempt(job_id, previous, &worker, deadline)?;
        }
        // On the record too: a reader of the log sees the attempt change hands
        // instead of a gap between its lease and its completion.
        for attempt in attempts {
            let mut event = attempt;
            event["worker_id"] = worker.0.clone().into();
            event["previous_worker_id"] = previous.0.clone().into();
            self.log_event("job_reattached", event)?;
        }
        self.retired_workers
            .insert(previous.clone(), worker.clone());
        let left_behind: Vec<(JobId, AttemptNumber)> = self
            .jobs
            .iter()
            .filter_map(|(id, job)| match &job.state {
                JobState::Running {
                    worker: holder,
                    attempt,
                    ..
                } if holder == previous
                    || job.gang.as_ref().is_some_and(|g| g.has_worker(previous)) =>
                {
                    Some((id.clone(), *attempt))
                }
                _ => None,
            })
            .collect();
        for (id, attempt) in &left_behind {
            self.requeue_lease(
                id,
                previous,
                *attempt,
                "worker_restarted",
                "its worker restarted without it",
            )?;
        }
        self.workers.remove(previous);
        tracing::info!(worker_id = %worker, previous_worker_id = %previous, reattached = reattached.len(), requeued = left_behind.len(), "worker restarted");
        Ok(Registration {
            worker,
            reattached,
            requeued: left_behind.len(),
        })
    }

    /// The attempts of `held` that run under `worker` (each once; gangs excluded).
    fn running_under(
        &self,
        worker: &WorkerId,
        held: &[(JobId, AttemptNumber)],
    ) -> Vec<(JobId, AttemptNumber)> {
        let mut found: Vec<(JobId, AttemptNumber)> = Vec::new();
        for (job_id, attempt) in held {
            let runs_there = self.jobs.get(job_id).is_some_and(|job| {
                job.gang.is_none()
                    && matches!(&job.state, JobState::Running { worker: w, attempt: a, .. } if w == worker && a == attempt)
            });
            if runs_there && !found.iter().any(|(id, _)| id == job_id) {
                found.push((job_id.clone(), *attempt));
            }
        }
        found
    }

    /// Moves `job_id`'s running attempt, and the slot it holds, from `from` to `to`.
    fn move_attempt(
        &mut self,
        job_id: &JobId,
        from: &WorkerId,
        to: &WorkerId,
        lease_deadline: Instant,
    ) -> Result<(), CoordinatorError> {
        let event = JobEvent::Reattached {
            worker: to.clone(),
            lease_deadline,
        };
        self.apply_event(job_id, event)?;
        if let Some(record) = self.workers.get_mut(from) {
            record.running.remove(job_id);
        }
        if let Some(record) = self.workers.get_mut(to) {
            record.running.insert(job_id.clone(), 1);
        }
        Ok(())
    }
}

/// A `reattach` journal record, read back at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredReattach {
    pub worker: WorkerId,
    pub previous: WorkerId,
    /// (stage run, job, attempt) of each attempt moved to `worker`.
    pub attempts: Vec<(u64, JobId, AttemptNumber)>,
}

/// Reads a `reattach` journal record; `None` when it names no workers.
pub fn recovered(record: &Value) -> Option<RecoveredReattach> {
    let worker = record["worker_id"].as_str()?;
    let previous = record["previous_worker_id"].as_str()?;
    let attempts = record["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|attempt| {
            let run = attempt["stage_run"].as_u64()?;
            let job = JobId::parse(attempt["job_id"].as_str()?).ok()?;
            let number = u32::try_from(attempt["attempt"].as_u64()?).ok()?;
            Some((run, job, number))
        })
        .collect();
    Some(RecoveredReattach {
        worker: WorkerId(worker.to_owned()),
        previous: WorkerId(previous.to_owned()),
        attempts,
    })
}
