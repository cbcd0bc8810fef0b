//! Data-parallel gangs (`resources.data_parallel: N`): one job, N ranks, N slots at once.
//!
//! A gang is placed whole or not at all: the scheduler (see [`crate::ops::scheduler`])
//! assigns all N ranks in one step from the slots that are free right now, on the
//! worker that asked and on other live workers, so no gang ever holds part of what it
//! needs and two gangs cannot deadlock. Ranks for other workers wait in that worker's
//! `pending` list and go out with its next lease call.
//!
//! Rank 0's worker is the job's worker as far as the lifecycle is concerned: it
//! reports the metrics and results and its completion ends the job. Every rank holds
//! its own lease, renewed by its worker's heartbeats; when any rank is lost or fails,
//! the whole attempt ends (requeued, or counted as one failed attempt), and the
//! heartbeats tell the surviving ranks to stop.
//!
//! A rank that stops because a peer died, vanished or went silent (its collective's
//! watchdog: a closed socket at once, a silent one after the ring's peer timeout, 60 s)
//! reports `PeerLost`. That is not its failure, so it does not end the attempt: the
//! attempt ends by the peer's own report (a failure, counted once), by the peer's
//! lease running out (its worker or node died: requeued, not counted), or, when every
//! rank reports a lost peer while every worker is alive (no peer died, yet the gang
//! could not talk: a bad network or a communicator that cannot start), as one failed
//! attempt, so a gang that can never connect does not requeue forever.

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::state::gang::{RendezvousAnswer, MAX_RENDEZVOUS_BYTES};
use crate::state::lifecycle::{Fence, JobState};
use crate::state::reports::{Completion, Outcome};
use expcluster_core::{AttemptNumber, JobId, WorkerId};
use std::time::Instant;

impl CoordinatorState {
    /// Why a queued gang cannot start, when the live workers are too few for it (it
    /// would otherwise wait with no word), for `status`.
    pub fn gang_wait_reason(
        &self,
        job: &crate::state::records::JobRecord,
        now: Instant,
    ) -> Option<String> {
        if job.ranks <= 1 || !matches!(job.state, JobState::Queued { .. }) {
            return None;
        }
        let live_after = now.checked_sub(self.settings.lease_timeout);
        let capacity: u32 = self
            .workers
            .values()
            .filter(|w| live_after.is_none_or(|after| w.last_seen >= after))
            .map(|w| w.slots)
            .sum();
        (job.ranks > capacity).then(|| {
            format!(
                "waiting for {} slots at once (resources.data_parallel); the live workers have {capacity} in all: start more workers",
                job.ranks
            )
        })
    }

    /// Frees every slot the job holds on any worker (its running attempt's worker,
    /// every rank of its gang, and `also`), and drops ranks not yet delivered.
    pub fn release_slots(&mut self, job_id: &JobId, also: Option<&WorkerId>) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let mut holders: Vec<WorkerId> = job
            .gang
            .as_ref()
            .map(|gang| gang.slots_by_worker().into_iter().map(|(w, _)| w).collect())
            .unwrap_or_default();
        if let JobState::Running { worker, .. } = &job.state {
            holders.push(worker.clone());
        }
        holders.extend(also.cloned());
        for worker in holders {
            if let Some(record) = self.workers.get_mut(&worker) {
                record.running.remove(job_id);
                record.pending.retain(|lease| &lease.job != job_id);
            }
        }
    }

    /// The gang of `attempt` of `job_id`, if `worker` runs one of its ranks.
    fn gang_member(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
    ) -> Result<&mut crate::state::gang::Gang, CoordinatorError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        // The attempt runs (on any of the gang's workers: rank 0 holds the lease).
        let current = job.state.fence(worker, attempt) != Fence::Over;
        match job.gang.as_mut() {
            Some(gang) if current && gang.has_worker(worker) => Ok(gang),
            gang => Err(CoordinatorError::refused_attempt(
                job_id,
                attempt,
                worker,
                current && gang.is_some(),
            )),
        }
    }

    /// Rank 0 publishes the communicator id (`publish` non-empty); any rank reads it.
    pub fn rendezvous(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        rank: u32,
        publish: &[u8],
    ) -> Result<RendezvousAnswer, CoordinatorError> {
        let gang = self.gang_member(worker, job_id, attempt)?;
        let holds_rank = gang
            .ranks
            .get(rank as usize)
            .is_some_and(|r| &r.worker == worker);
        if !holds_rank {
            return Err(CoordinatorError::NotYourJob {
                job: format!("{job_id} rank {rank}"),
                attempt,
                worker: worker.to_string(),
            });
        }
        if !publish.is_empty() {
            if rank != 0 {
                return Err(CoordinatorError::InvalidRequest(
                    "only rank 0 publishes the communicator id".into(),
                ));
            }
            if publish.len() > MAX_RENDEZVOUS_BYTES {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "communicator id of {} bytes is over the {MAX_RENDEZVOUS_BYTES}-byte limit",
                    publish.len()
                )));
            }
            match &gang.rendezvous {
                Some(existing) if existing != publish => {
                    return Err(CoordinatorError::Conflict(format!(
                        "rank 0 of {job_id} attempt {attempt} already published another id"
                    )))
                }
                Some(_) => {}
                None => {
                    // Durable before any rank hears of it: after a coordinator restart
                    // the waiting ranks still get the id rank 0 already acted on.
                    self.journal_record(
                        "rendezvous",
                        serde_json::json!({"job_id": job_id, "attempt": attempt, "id_hex": hex::encode(publish)}),
                    )?;
                    self.gang_member(worker, job_id, attempt)?.rendezvous = Some(publish.to_vec());
                }
            }
        }
        let gang = self.gang_member(worker, job_id, attempt)?;
        Ok(match &gang.rendezvous {
            Some(id) => RendezvousAnswer::Ready(id.clone()),
            None => RendezvousAnswer::NotYet,
        })
    }

    /// A rank of the current attempt ended: any rank that lost a peer, or a rank other
    /// than 0. Success frees its slot; a lost peer frees it and waits for the peer's
    /// end (see the module's comment); anything else ends the whole attempt. Returns
    /// `Some(requeued)` when this was such a rank, `None` when the completion takes
    /// the ordinary path (rank 0's other ends, an ordinary job, or an attempt that is
    /// over, which that path answers).
    pub fn complete_gang_rank(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        completion: &Completion,
        now: Instant,
    ) -> Result<Option<bool>, CoordinatorError> {
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(None);
        };
        let Some(gang) = &job.gang else {
            return Ok(None);
        };
        let rank = completion.rank;
        let holds_rank = gang
            .ranks
            .get(rank as usize)
            .is_some_and(|r| &r.worker == worker);
        let is_current =
            matches!(&job.state, JobState::Running { attempt: a, .. } if *a == attempt);
        let peer_lost = completion.outcome == Outcome::PeerLost;
        if (rank == 0 && !peer_lost) || !is_current {
            return Ok(None);
        }
        if !holds_rank {
            return Err(CoordinatorError::NotYourJob {
                job: format!("{job_id} rank {rank}"),
                attempt,
                worker: worker.to_string(),
            });
        }
        let rank_error = format!("rank {rank} on worker {worker} ended: {}", completion.error);
        match completion.outcome {
            Outcome::Succeeded => {
                self.free_rank_slot(worker, job_id);
                Ok(Some(false))
            }
            Outcome::PeerLost => {
                self.free_rank_slot(worker, job_id);
                let every_rank_lost_its_peers = self.mark_peer_lost(job_id, rank as usize);
                if !every_rank_lost_its_peers {
                    return Ok(Some(false));
                }
                if let Some(job) = self.jobs.get_mut(job_id) {
                    job.error = format!("every rank lost its peers, no rank failed or vanished (the gang could not talk); last: {rank_error}");
                    job.stderr_tail = completion.stderr_tail.clone();
                }
                self.release_slots(job_id, Some(worker));
                let requeued = self.finish_failure(job_id, attempt, worker, now)?;
                Ok(Some(requeued))
            }
            Outcome::Failed => {
                if let Some(job) = self.jobs.get_mut(job_id) {
                    job.error = rank_error;
                    job.stderr_tail = completion.stderr_tail.clone();
                }
                // Before the state moves on: the slots are found through it.
                self.release_slots(job_id, Some(worker));
                let requeued = self.finish_failure(job_id, attempt, worker, now)?;
                Ok(Some(requeued))
            }
            Outcome::Preempted | Outcome::Cancelled => {
                let stage_run = job.stage_run;
                self.log_event(
                    "job_requeued",
                    serde_json::json!({"job_id": job_id, "attempt": attempt, "stage_run": stage_run, "worker_id": worker.0, "reason": "gang_rank_stopped"}),
                )?;
                self.interrupt(job_id, &rank_error)?;
                Ok(Some(true))
            }
        }
    }
}

impl CoordinatorState {
    /// One rank's slot on `worker` is free again (the others still run).
    fn free_rank_slot(&mut self, worker: &WorkerId, job_id: &JobId) {
        if let Some(record) = self.workers.get_mut(worker) {
            if let Some(held) = record.running.get_mut(job_id) {
                *held = held.saturating_sub(1);
            }
        }
    }

    /// Marks `rank` of the job's gang as stopped by a lost peer; returns whether
    /// every rank now is.
    fn mark_peer_lost(&mut self, job_id: &JobId, rank: usize) -> bool {
        let Some(gang) = self.jobs.get_mut(job_id).and_then(|job| job.gang.as_mut()) else {
            return false;
        };
        if let Some(stopped) = gang.ranks.get_mut(rank) {
            stopped.peer_lost = true;
        }
        gang.ranks.iter().all(|rank| rank.peer_lost)
    }
}
