//! Workers: registration, heartbeats, leasing, and requeueing the work of workers
//! whose lease ran out. Liveness uses the coordinator's monotonic clock only, so a
//! worker's skewed wall clock cannot cause an early or late requeue.

use crate::error::CoordinatorError;
use crate::lifecycle::{JobEvent, JobState};
use crate::scheduler::{pick_jobs, QueuedJob};
use crate::state::{CoordinatorState, WorkerRecord};
use expcluster_core::{AttemptNumber, JobId, WorkerId};
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: JobId,
    pub attempt: AttemptNumber,
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
        self.workers.insert(
            id.clone(),
            WorkerRecord {
                hostname: hostname.to_owned(),
                slots,
                last_seen: now,
                running: HashSet::new(),
            },
        );
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
            let current = self.jobs.get_mut(job_id).filter(|job| {
                matches!(&job.state, JobState::Running { worker: w, attempt: a, .. } if w == worker && a == attempt)
            });
            match current {
                Some(job) => {
                    job.state = job
                        .state
                        .apply(JobEvent::Renewed {
                            lease_deadline: deadline,
                        })
                        .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
                }
                None => stop.push((job_id.clone(), *attempt)),
            }
        }
        Ok(stop)
    }

    /// Leases up to `free_slots` queued jobs to `worker`.
    pub fn lease(
        &mut self,
        worker: &WorkerId,
        free_slots: usize,
        now: Instant,
    ) -> Result<Vec<Lease>, CoordinatorError> {
        if !self.workers.contains_key(worker) {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        }
        let queued = self.queue.iter().enumerate().filter_map(|(index, id)| {
            match self.jobs.get(id).map(|job| &job.state) {
                Some(JobState::Queued { not_before }) => Some(QueuedJob {
                    key: index,
                    not_before: *not_before,
                }),
                _ => None,
            }
        });
        // `pick_jobs` is lazy: it scans the queue only until it has found enough
        // ready jobs, so a lease costs what it hands out (plus jobs in backoff ahead
        // of them), not the length of a 100,000-job queue.
        let picked = pick_jobs(queued, free_slots, now);
        let picked_ids: Vec<JobId> = picked
            .iter()
            .filter_map(|i| self.queue.get(*i).cloned())
            .collect();
        for index in picked.iter().rev() {
            self.queue.remove(*index);
        }
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
        if !picked_ids.is_empty() {
            // Durable before the worker hears of it, so a restarted coordinator knows
            // which attempt is running where.
            let records: Vec<serde_json::Value> = picked_ids
                .iter()
                .filter_map(|id| self.jobs.get(id).map(|job| json!({"job_id": id, "attempt": job.attempts + 1, "stage_run": job.stage_run})))
                .collect();
            if let Err(err) =
                self.journal_record("lease", json!({"worker_id": worker.0, "leases": records}))
            {
                for id in picked_ids.iter().rev() {
                    self.queue.push_front(id.clone());
                }
                return Err(err);
            }
        }
        let mut leases = Vec::new();
        for id in picked_ids {
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
            job.spool = None;
            job.artifacts.clear();
            if let Some(record) = self.workers.get_mut(worker) {
                record.running.insert(id.clone());
            }
            tracing::info!(job_id = %id, worker_id = %worker, attempt, "job leased");
            leases.push(Lease { job: id, attempt });
        }
        Ok(leases)
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
                _ => None,
            })
            .collect();
        for (id, worker, attempt) in &expired {
            let stage_run = self.job(id)?.stage_run;
            self.log_event(
                "job_requeued",
                json!({"job_id": id, "attempt": attempt, "stage_run": stage_run, "worker_id": worker.0, "reason": "lease_expired"}),
            )?;
            self.interrupt(id, "lease expired: the worker stopped heartbeating")?;
        }
        // Forget workers silent for many leases (their jobs are already requeued).
        let forget_after = self.settings.lease_timeout * 6;
        self.workers
            .retain(|_, record| now.duration_since(record.last_seen) < forget_after);
        Ok(expired.len())
    }

    /// Puts a running job back in the queue without spending its failure budget.
    pub fn interrupt(&mut self, id: &JobId, reason: &str) -> Result<(), CoordinatorError> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| CoordinatorError::UnknownJob(id.to_string()))?;
        if let JobState::Running { worker, .. } = &job.state {
            if let Some(record) = self.workers.get_mut(worker) {
                record.running.remove(id);
            }
        }
        job.state = job
            .state
            .apply(JobEvent::Interrupted)
            .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
        job.error = reason.to_owned();
        self.queue.push_front(id.clone());
        Ok(())
    }
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
