//! Workers: registration, heartbeats, leasing, and requeueing the work of workers
//! whose lease ran out. Liveness uses the coordinator's monotonic clock only, so a
//! worker's skewed wall clock cannot cause an early or late requeue.

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::state::gang::{Assignment, Gang};
use crate::state::lifecycle::{JobEvent, JobState};
use crate::state::records::WorkerRecord;
use crate::state::reports::Lease;
use crate::state::scheduler::{pick_jobs, ClusterView, Pick, QueuedJob};
use expcluster_core::{AttemptNumber, JobId, WorkerId};
use serde_json::json;
use std::time::{Duration, Instant};

/// The journal's `lease` record, serialized from borrowed fields (it was a `json!`
/// tree built per lease): the same keys in the same order, so journals written
/// before and after read the same.
#[derive(serde::Serialize)]
pub(crate) struct LeaseRecord<'a> {
    pub(crate) worker_id: &'a str,
    pub(crate) leases: Vec<LeasedAttempt<'a>>,
}

/// One attempt of a [`LeaseRecord`]; `gang` names each rank's worker.
#[derive(serde::Serialize)]
pub(crate) struct LeasedAttempt<'a> {
    job_id: &'a JobId,
    attempt: AttemptNumber,
    stage_run: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    gang: Option<Vec<&'a str>>,
}

impl<'a> LeasedAttempt<'a> {
    pub(crate) fn new(
        job_id: &'a JobId,
        attempt: AttemptNumber,
        stage_run: u64,
        assignment: Option<&'a Assignment>,
    ) -> Self {
        let gang = assignment.map(|assignment| {
            assignment
                .iter()
                .flat_map(|(w, n)| std::iter::repeat_n(w.0.as_str(), *n as usize))
                .collect()
        });
        Self {
            job_id,
            attempt,
            stage_run,
            gang,
        }
    }
}

impl CoordinatorState {
    pub fn register_worker(
        &mut self,
        hostname: &str,
        slots: u32,
        now: Instant,
    ) -> Result<WorkerId, CoordinatorError> {
        // The random part makes ids unguessable: every report is fenced by (worker id,
        // job, attempt), so holding the shared worker token is not enough to act as
        // another worker.
        let secret: u64 = rand::random();
        let id = WorkerId(format!(
            "w{}-{}-{secret:016x}",
            self.next_worker,
            sanitize_host(hostname)
        ));
        // Journaled so that after a coordinator restart the worker's id still works.
        self.journal_record(
            "worker",
            json!({"worker_id": id.0, "hostname": hostname, "slots": slots}),
        )?;
        self.next_worker += 1;
        self.workers
            .insert(id.clone(), WorkerRecord::new(hostname, slots, now));
        tracing::info!(worker_id = %id, slots, "worker registered");
        Ok(id)
    }

    /// Renews the worker's leases; returns the attempts it must stop.
    pub fn heartbeat(
        &mut self,
        worker: &WorkerId,
        running: &[(JobId, AttemptNumber)],
        now: Instant,
    ) -> Result<Vec<(JobId, AttemptNumber)>, CoordinatorError> {
        let record = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| CoordinatorError::UnknownWorker(worker.to_string()))?;
        record.last_seen = now;
        let deadline = now + self.settings.lease_timeout;
        let mut stop = Vec::new();
        for (job_id, attempt) in running {
            let current = self.jobs.get_mut(job_id).filter(|job| match &job.state {
                JobState::Running {
                    worker: w,
                    attempt: a,
                    ..
                } if a == attempt => {
                    w == worker || job.gang.as_ref().is_some_and(|g| g.has_worker(worker))
                }
                _ => false,
            });
            let Some(job) = current else {
                stop.push((job_id.clone(), *attempt));
                continue;
            };
            if let Some(gang) = job.gang.as_mut() {
                for rank in gang.ranks.iter_mut().filter(|r| &r.worker == worker) {
                    rank.deadline = deadline;
                }
            }
            if matches!(&job.state, JobState::Running { worker: w, .. } if w == worker) {
                job.state = job
                    .state
                    .apply(JobEvent::Renewed {
                        lease_deadline: deadline,
                    })
                    .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
            }
        }
        Ok(stop)
    }

    /// Leases up to `free_slots` queued jobs (or gang ranks) to `worker`.
    pub fn lease(
        &mut self,
        worker: &WorkerId,
        free_slots: usize,
        now: Instant,
    ) -> Result<Vec<Lease>, CoordinatorError> {
        let Some(record) = self.workers.get_mut(worker) else {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        };
        // Ranks placed here by another worker's call come first: their gang waits.
        let delivered = free_slots.min(record.pending.len());
        let mut leases: Vec<Lease> = record.pending.drain(..delivered).collect();
        // The worker's own count of free slots is the truth for its slots (it frees a
        // slot when a job ends, before the coordinator hears the end).
        let caller_free = (free_slots - delivered) as u32;
        let queued = self.queue.iter().enumerate().filter_map(|(index, id)| {
            let job = self.jobs.get(id)?;
            match &job.state {
                JobState::Queued { not_before } => Some(QueuedJob {
                    key: index,
                    not_before: *not_before,
                    ranks: job.ranks,
                }),
                _ => None,
            }
        });
        // `pick_jobs` is lazy: it scans the queue only until it has found enough
        // ready jobs, so a lease costs what it hands out (plus jobs in backoff ahead
        // of them), not the length of a 100,000-job queue.
        let live_after = now.checked_sub(self.settings.lease_timeout);
        let workers = &self.workers;
        let cluster = || cluster_view(workers, worker, live_after);
        let picks = pick_jobs(queued, worker, caller_free, cluster, now);
        // Picks come in queue order: taking them out from the back keeps the earlier
        // indices valid.
        let mut picked: Vec<(JobId, Option<Assignment>)> = Vec::with_capacity(picks.len());
        for pick in picks.into_iter().rev() {
            let (index, assignment) = match pick {
                Pick::Single(index) => (index, None),
                Pick::Gang(index, assignment) => (index, Some(assignment)),
            };
            if let Some(id) = self.queue.remove(index) {
                picked.push((id, assignment));
            }
        }
        picked.reverse();
        // Entries ahead of the picked ones that are no longer queued (cancelled jobs)
        // are dropped as they are met.
        while self.queue.front().is_some_and(|id| {
            !self
                .jobs
                .get(id)
                .is_some_and(|job| matches!(job.state, JobState::Queued { .. }))
        }) {
            self.queue.pop_front();
        }
        let deadline = now + self.settings.lease_timeout;
        if !picked.is_empty() {
            // Journaled so a restarted coordinator knows which attempt runs where. A
            // session answers the lease before this is synced (a lease acknowledges
            // nothing; see service/session.rs), and every report about the attempt
            // waits for it.
            let leases_of: Vec<LeasedAttempt<'_>> = picked
                .iter()
                .filter_map(|(id, assignment)| {
                    let job = self.jobs.get(id)?;
                    Some(LeasedAttempt::new(
                        id,
                        job.attempts + 1,
                        job.stage_run,
                        assignment.as_ref(),
                    ))
                })
                .collect();
            let record = LeaseRecord {
                worker_id: &worker.0,
                leases: leases_of,
            };
            if let Err(err) = self
                .journal
                .append_serialized("lease", self.idea_version, &record)
                .map_err(CoordinatorError::storage)
            {
                for (id, _) in picked.iter().rev() {
                    self.queue.push_front(id.clone());
                }
                if let Some(record) = self.workers.get_mut(worker) {
                    for lease in leases.into_iter().rev() {
                        record.pending.insert(0, lease);
                    }
                }
                return Err(err);
            }
        }
        for (id, assignment) in picked {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let attempt = job.attempts + 1;
            job.state = job
                .state
                .apply(JobEvent::Leased {
                    worker: worker.clone(),
                    attempt,
                    lease_deadline: deadline,
                })
                .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
            job.attempts = attempt;
            job.series.clear();
            job.next_seq = 0;
            self.spools.remove(&id);
            job.artifacts.clear();
            job.gang = assignment.as_ref().map(|a| Gang::new(a, deadline));
            match assignment {
                None => {
                    if let Some(record) = self.workers.get_mut(worker) {
                        record.running.insert(id.clone(), 1);
                    }
                    leases.push(Lease {
                        job: id.clone(),
                        attempt,
                        rank: 0,
                    });
                }
                Some(assignment) => {
                    let mut rank = 0;
                    for (holder, count) in assignment {
                        let Some(record) = self.workers.get_mut(&holder) else {
                            continue;
                        };
                        record.running.insert(id.clone(), count);
                        for _ in 0..count {
                            let lease = Lease {
                                job: id.clone(),
                                attempt,
                                rank,
                            };
                            if &holder == worker {
                                leases.push(lease);
                            } else {
                                record.pending.push(lease);
                            }
                            rank += 1;
                        }
                    }
                }
            }
            tracing::info!(job_id = %id, worker_id = %worker, attempt, "job leased");
        }
        if !leases.is_empty() {
            self.live.publish(|| {
                let jobs = leases.iter().map(|lease| lease.job.clone()).collect();
                crate::store::live_feed::LiveEvent::Leased(std::sync::Arc::new(jobs))
            });
        }
        Ok(leases)
    }

    /// Whether any worker has gang ranks waiting to be handed out.
    pub fn has_pending_ranks(&self) -> bool {
        self.workers
            .values()
            .any(|record| !record.pending.is_empty())
    }

    /// Gives every lease back the time this coordinator could not hear heartbeats
    /// (`deaf`: its state was held by a write stuck on a stalled disk, or the process
    /// was stopped). A worker that beat on its period all along must not lose its
    /// jobs for the coordinator's own silence; one that died meanwhile is found
    /// `deaf` later than it would have been.
    pub fn excuse_deaf_period(&mut self, deaf: Duration, now: Instant) {
        // Never more than a fresh lease: a worker heard during the window needs less.
        let fresh = now + self.settings.lease_timeout;
        let extend =
            |deadline: &mut Instant| *deadline = (*deadline + deaf).min(fresh).max(*deadline);
        for record in self.workers.values_mut() {
            record.last_seen = (record.last_seen + deaf).min(now).max(record.last_seen);
        }
        for job in self.jobs.values_mut() {
            if let JobState::Running { lease_deadline, .. } = &mut job.state {
                extend(lease_deadline);
            }
            if let Some(gang) = job.gang.as_mut() {
                for rank in &mut gang.ranks {
                    extend(&mut rank.deadline);
                }
            }
        }
    }

    /// Requeues the jobs whose lease ran out; returns how many were requeued.
    pub fn expire_leases(&mut self, now: Instant) -> Result<usize, CoordinatorError> {
        let expired: Vec<(JobId, WorkerId, AttemptNumber)> = self
            .jobs
            .iter()
            .filter_map(|(id, job)| match &job.state {
                JobState::Running {
                    worker,
                    attempt,
                    lease_deadline,
                } if *lease_deadline <= now => Some((id.clone(), worker.clone(), *attempt)),
                // A gang rank's lease (its worker died, or never picked the rank up).
                JobState::Running { attempt, .. } => {
                    let gang = job.gang.as_ref()?;
                    let lost = gang.lost_rank(now)?;
                    Some((id.clone(), gang.ranks[lost].worker.clone(), *attempt))
                }
                _ => None,
            })
            .collect();
        for (id, worker, attempt) in &expired {
            self.requeue_lease(
                id,
                worker,
                *attempt,
                "lease_expired",
                "lease expired: the worker stopped heartbeating",
            )?;
        }
        // Forget workers silent for many leases (their jobs are already requeued).
        let forget_after = self.settings.lease_timeout * 6;
        self.workers
            .retain(|_, record| now.duration_since(record.last_seen) < forget_after);
        // A retired id is only remembered while the worker that replaced it is known.
        let workers = &self.workers;
        self.retired_workers
            .retain(|_, successor| workers.contains_key(successor));
        Ok(expired.len())
    }

    /// Requeues jobs whose lease answer was never sent (its records could not be
    /// written, or the worker's session was gone), so they need not wait for the
    /// lease to run out. The attempt named must still be the running one: a lease is
    /// known by its job and attempt.
    pub fn return_undelivered(
        &mut self,
        leases: &[(JobId, AttemptNumber)],
    ) -> Result<(), CoordinatorError> {
        for (id, attempt) in leases {
            let Some(job) = self.jobs.get(id) else {
                continue;
            };
            let JobState::Running {
                worker,
                attempt: running,
                ..
            } = &job.state
            else {
                continue;
            };
            if running != attempt {
                continue;
            }
            let worker = worker.clone();
            self.requeue_lease(
                id,
                &worker,
                *attempt,
                "lease_not_delivered",
                "the lease could not be answered",
            )?;
        }
        Ok(())
    }

    /// Logs `job_requeued` (`reason`, as documented in docs/research-log.md) for the
    /// lease of `attempt` of `id` held by `worker`, and puts the job back in the queue
    /// (`why` is kept as its last error).
    pub(crate) fn requeue_lease(
        &mut self,
        id: &JobId,
        worker: &WorkerId,
        attempt: AttemptNumber,
        reason: &str,
        why: &str,
    ) -> Result<(), CoordinatorError> {
        let stage_run = self.job(id)?.stage_run;
        self.log_event(
            "job_requeued",
            json!({"job_id": id, "attempt": attempt, "stage_run": stage_run, "worker_id": worker.0, "reason": reason}),
        )?;
        self.interrupt(id, why)
    }

    /// Puts a running job back in the queue without spending its failure budget.
    pub fn interrupt(&mut self, id: &JobId, reason: &str) -> Result<(), CoordinatorError> {
        self.release_slots(id, None);
        let job = self.apply_event(id, JobEvent::Interrupted)?;
        job.error = reason.to_owned();
        self.queue.push_front(id.clone());
        Ok(())
    }
}

/// The free slots of every live worker but `caller`, and the live capacity.
fn cluster_view(
    workers: &std::collections::HashMap<WorkerId, WorkerRecord>,
    caller: &WorkerId,
    live_after: Option<Instant>,
) -> ClusterView {
    let mut view = ClusterView::default();
    for (id, record) in workers {
        if live_after.is_some_and(|after| record.last_seen < after) {
            continue;
        }
        view.live_capacity += record.slots;
        if id != caller {
            view.others_free.push((id.clone(), record.free_slots()));
        }
    }
    view
}

fn sanitize_host(hostname: &str) -> String {
    let cleaned: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    if cleaned.is_empty() {
        "host".to_owned()
    } else {
        cleaned
    }
}
