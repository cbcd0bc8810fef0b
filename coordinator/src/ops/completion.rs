//! What workers report about an attempt: metric points, result files, completion.
//!
//! Every call is fenced by (worker, job, attempt): only the attempt currently leased
//! to that worker may write, so a superseded attempt (a worker that was stopped past
//! its lease, then resumed) cannot add to or finish a job that moved on.

use crate::error::CoordinatorError;
use crate::ops::{Completed, CoordinatorState};
use crate::state::lifecycle::{retry_backoff, Fence, JobEvent, JobState};
use crate::state::records::JobRecord;
use crate::state::reports::{Completion, CompletionKey, MetricPoint, Outcome};
use crate::store::job_metrics::{self, AttemptResult};
use crate::store::live_feed::{LiveEvent, MetricPoints};
use crate::store::metric_batch::PreparedPoints;
use crate::store::metric_spool::MetricSpool;
use expcluster_core::ids::is_safe_name;
use expcluster_core::json_float::map_to_json;
use expcluster_core::npy::validate_npy;
use expcluster_core::{AttemptNumber, JobId, Stage, WorkerId};
use indexmap::IndexMap;
use serde_json::json;
use std::time::Instant;

impl CoordinatorState {
    /// The job record, if `attempt` of `job` is currently leased to `worker`.
    pub(crate) fn current_attempt(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
    ) -> Result<&mut JobRecord, CoordinatorError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        match job.state.fence(worker, attempt) {
            Fence::Current => Ok(job),
            fence => Err(CoordinatorError::refused_attempt(
                job_id,
                attempt,
                worker,
                fence == Fence::HeldElsewhere,
            )),
        }
    }

    /// Stores a batch of points exactly once; returns the acknowledged sequence bound.
    pub fn report_metrics(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        points: &[MetricPoint],
    ) -> Result<u64, CoordinatorError> {
        let prepared = PreparedPoints::new(points.to_vec())?;
        self.report_prepared(worker, job_id, attempt, &prepared)
    }

    /// [`Self::report_metrics`] for a batch checked and formatted before the lock.
    ///
    /// Points below the bound are duplicates (a resend) and skipped; a point past a gap
    /// is not stored until the gap is filled, so the stored sequence stays contiguous.
    pub fn report_prepared(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        prepared: &PreparedPoints,
    ) -> Result<u64, CoordinatorError> {
        let state_dir = self.workspace.state_dir();
        let job = self.current_attempt(worker, job_id, attempt)?;
        let mut accepted = Vec::new();
        let mut next = job.next_seq;
        for (index, point) in prepared.points.iter().enumerate() {
            if point.seq < next {
                continue;
            }
            if point.seq > next {
                break;
            }
            accepted.push(index);
            next += 1;
        }
        if accepted.is_empty() {
            return Ok(job.next_seq);
        }
        let fresh = job.next_seq == 0;
        let lines = prepared.lines_of(&accepted);
        if !self.spools.contains_key(job_id) {
            let spool = MetricSpool::open(&state_dir, job_id, attempt, fresh)
                .map_err(CoordinatorError::storage)?;
            self.spools.insert(job_id.clone(), spool);
        }
        if let Some(spool) = self.spools.get_mut(job_id) {
            spool.append(&lines).map_err(CoordinatorError::storage)?;
        }
        // Fenced above; looked up again because the spool borrowed the state.
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        for &index in &accepted {
            let point = &prepared.points[index];
            job.record_point(&point.name, point.step, point.value);
        }
        job.next_seq = next;
        self.live.publish(|| {
            LiveEvent::Metrics(std::sync::Arc::new(MetricPoints::sampled(
                job_id,
                attempt,
                &accepted,
                |&index| {
                    let point = &prepared.points[index];
                    (point.name.as_str(), point.step, point.value)
                },
            )))
        });
        Ok(next)
    }

    /// Stores one result `.npy` (validated) or one log of the current attempt.
    pub fn upload_artifact(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        name: &str,
        content: &[u8],
        is_log: bool,
    ) -> Result<String, CoordinatorError> {
        let logs_dir = self.workspace.logs_dir();
        let results_root = self.workspace.results_dir();
        let job = self.current_attempt(worker, job_id, attempt)?;
        if is_log {
            if !matches!(name, "stdout" | "stderr" | "worker") {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "log name {name:?} must be stdout, stderr or worker"
                )));
            }
            let stored = format!("{job_id}.a{attempt}.{name}.log");
            // Fsynced with the next group commit: the answer waits for it.
            crate::store::group_commit::write_atomic(&logs_dir.join(&stored), content)
                .map_err(CoordinatorError::storage)?;
            return Ok(format!("logs/{stored}"));
        }
        if !is_safe_name(name) || !name.ends_with(".npy") || name.len() > 128 {
            return Err(CoordinatorError::InvalidRequest(format!(
                "artifact name {name:?} is not allowed: use a plain file name ending in .npy"
            )));
        }
        validate_npy(content).map_err(|reason| {
            CoordinatorError::InvalidRequest(format!("artifact {name}: {reason}"))
        })?;
        let dir = results_root
            .join("jobs")
            .join(job_id.as_str())
            .join(&job.def.fingerprint);
        crate::store::group_commit::write_atomic(&dir.join(name), content)
            .map_err(CoordinatorError::storage)?;
        if !job.artifacts.iter().any(|stored| stored == name) {
            job.artifacts.push(name.to_owned());
        }
        Ok(format!(
            "experiment_results/jobs/{job_id}/{}/{name}",
            job.def.fingerprint
        ))
    }

    /// Ends an attempt. Returns whether the job will run again.
    pub fn complete(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        attempt: AttemptNumber,
        completion: Completion,
        now: Instant,
    ) -> Result<bool, CoordinatorError> {
        let key = CompletionKey {
            outcome: completion.outcome,
            exit_code: completion.exit_code,
        };
        if let Some(job) = self.jobs.get(job_id) {
            if let Some((previous, answer)) = job.completions.get(&attempt) {
                return if *previous == key {
                    Ok(*answer)
                } else {
                    Err(CoordinatorError::Conflict(format!(
                        "attempt {attempt} of {job_id} was already completed differently"
                    )))
                };
            }
            if matches!(job.state, JobState::Cancelled) {
                return Ok(false);
            }
        }
        if let Some(requeued) =
            self.complete_gang_rank(worker, job_id, attempt, &completion, now)?
        {
            if let Err(err) = self.finish_stages_if_done() {
                tracing::error!(%err, "cannot finish the stage yet; will retry");
                self.stage_finish_pending = true;
            }
            return Ok(requeued);
        }
        let job = self.current_attempt(worker, job_id, attempt)?;
        if completion.outcome == Outcome::Succeeded && completion.metric_count != job.next_seq {
            return Err(CoordinatorError::InvalidRequest(format!(
                "{} metric points were produced but {} acknowledged: send the rest first",
                completion.metric_count, job.next_seq
            )));
        }
        job.error = completion.error.clone();
        job.stderr_tail = completion.stderr_tail.clone();
        job.duration_s = completion.duration_s;
        job.exit_code = completion.exit_code;
        let requeued = match completion.outcome {
            Outcome::Succeeded => {
                self.finish_success(job_id, attempt, worker)?;
                false
            }
            Outcome::Failed | Outcome::PeerLost => {
                self.finish_failure(job_id, attempt, worker, now)?
            }
            Outcome::Preempted | Outcome::Cancelled => {
                let stage_run = job.stage_run;
                self.log_event(
                    "job_preempted",
                    json!({
                        "job_id": job_id,
                        "attempt": attempt,
                        "stage_run": stage_run,
                        "worker_id": worker.0,
                        "outcome": if completion.outcome == Outcome::Cancelled { "cancelled" } else { "preempted" },
                        "exit_code": completion.exit_code,
                    }),
                )?;
                self.interrupt(job_id, "preempted")?;
                true
            }
        };
        // The attempt is over: its spool is complete.
        self.spools.remove(job_id);
        self.release_slots(job_id, Some(worker));
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.completions.insert(attempt, (key, requeued));
        }
        // The attempt's outcome is durable; writing the stage's results is not part of
        // acknowledging it. If that fails (a full disk), the reaper retries it.
        if let Err(err) = self.finish_stages_if_done() {
            tracing::error!(%err, "cannot finish the stage yet; will retry");
            self.stage_finish_pending = true;
        }
        Ok(requeued)
    }

    fn finish_success(
        &mut self,
        job_id: &JobId,
        attempt: AttemptNumber,
        worker: &WorkerId,
    ) -> Result<(), CoordinatorError> {
        let job = self.job(job_id)?;
        let final_metrics = job.final_metrics();
        let result = AttemptResult {
            stage_run: job.stage_run,
            attempt,
            artifacts: &job.artifacts,
            duration_s: job.duration_s,
        };
        let line = job_metrics::render(&job.def, &result, &job.series)
            .map_err(CoordinatorError::storage)?;
        // Before the event that says the attempt succeeded; the same group commit
        // makes both durable before the completion is answered (job_metrics.rs).
        let at = self
            .results
            .append(&line)
            .map_err(CoordinatorError::storage)?;
        // Serialized straight from the job's record, not copied into a `json!` tree
        // first.
        let (jobs, mut events) = self.jobs_and_events();
        let job = jobs
            .get(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        let success = SuccessFields {
            metrics: map_to_json(&final_metrics),
            artifacts: &job.artifacts,
            duration_s: job.duration_s,
        };
        let event = AttemptEvent::new(job, attempt, worker, "succeeded", success);
        events.record("job_completed", &event)?;
        let fingerprint = job.def.fingerprint.clone();
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        job.state = job
            .state
            .apply(JobEvent::Succeeded)
            .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
        let done = Completed {
            fingerprint,
            line: Some(at),
        };
        self.completed.insert(job_id.clone(), done);
        Ok(())
    }

    pub(crate) fn finish_failure(
        &mut self,
        job_id: &JobId,
        attempt: AttemptNumber,
        worker: &WorkerId,
        now: Instant,
    ) -> Result<bool, CoordinatorError> {
        let job = self.job(job_id)?;
        let failures = job.failures + 1;
        let retry_at = (failures < job.max_attempts).then(|| now + retry_backoff(failures));
        let reason = job.error.clone();
        let mut event = attempt_event(job, attempt, worker, "failed");
        event.insert("error".into(), json!(reason));
        event.insert("stderr_tail".into(), json!(job.stderr_tail));
        event.insert("failures".into(), json!(failures));
        event.insert("max_attempts".into(), json!(job.max_attempts));
        let event = serde_json::Value::Object(event);
        // Durable first: the failure is logged before the state moves on.
        if retry_at.is_some() {
            self.log_event("job_attempt_failed", event)?;
        } else {
            self.log_event("job_completed", event)?;
        }
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()))?;
        job.failures = failures;
        job.state = job
            .state
            .apply(JobEvent::AttemptFailed { reason, retry_at })
            .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
        if retry_at.is_some() {
            self.queue.push_back(job_id.clone());
        }
        Ok(retry_at.is_some())
    }
}

/// The fields every attempt event of the research log carries, in the order they
/// have always had, then the outcome's own (`O`).
#[derive(serde::Serialize)]
pub(crate) struct AttemptEvent<'a, O> {
    job_id: &'a JobId,
    stage_run: u64,
    stage: Stage,
    method: &'a str,
    seed: u64,
    sweep_point: &'a IndexMap<String, serde_json::Value>,
    fingerprint: &'a str,
    attempt: AttemptNumber,
    worker_id: &'a str,
    exit_code: i32,
    status: &'a str,
    #[serde(flatten)]
    outcome: O,
}

impl<'a, O> AttemptEvent<'a, O> {
    pub(crate) fn new(
        job: &'a JobRecord,
        attempt: AttemptNumber,
        worker: &'a WorkerId,
        status: &'a str,
        outcome: O,
    ) -> Self {
        Self {
            job_id: &job.def.id,
            stage_run: job.stage_run,
            stage: job.def.stage,
            method: &job.def.variant,
            seed: job.def.seed,
            sweep_point: &job.def.sweep_point,
            fingerprint: &job.def.fingerprint,
            attempt,
            worker_id: &worker.0,
            exit_code: job.exit_code,
            status,
            outcome,
        }
    }
}

/// What a success adds to the attempt's fields in its `job_completed` event.
#[derive(serde::Serialize)]
pub(crate) struct SuccessFields<'a> {
    pub(crate) metrics: serde_json::Value,
    pub(crate) artifacts: &'a [String],
    pub(crate) duration_s: f64,
}

/// The fields every attempt event of the research log carries, as a map to add to.
fn attempt_event(
    job: &JobRecord,
    attempt: AttemptNumber,
    worker: &WorkerId,
    status: &str,
) -> serde_json::Map<String, serde_json::Value> {
    #[derive(serde::Serialize)]
    struct NoOutcome {}
    match serde_json::to_value(AttemptEvent::new(
        job,
        attempt,
        worker,
        status,
        NoOutcome {},
    )) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}
