//! Conversions between wire messages and domain types, in one place. Ids that come
//! from outside are validated here (`TryFrom`-style), never unwrapped.

use crate::ops::CoordinatorState;
use crate::state::lifecycle::JobState;
use crate::state::records::JobRecord;
use crate::state::reports::{Completion, MetricPoint, Outcome};
use crate::store::code_files::CodeFiles;
use expcluster_core::{JobDefinition, JobId, Stage, WorkerId};
use expcluster_proto::v1;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

pub fn job_id(raw: &str) -> Result<JobId, Status> {
    JobId::parse(raw).map_err(Status::invalid_argument)
}

pub fn worker_id(raw: &str) -> Result<WorkerId, Status> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(Status::invalid_argument("missing or oversized worker id"));
    }
    Ok(WorkerId(raw.to_owned()))
}

/// A registration's claim to be a restart on the same node: the previous worker id
/// and the attempts it holds; `None` for a fresh worker.
pub fn restarted_worker(
    request: &v1::RegisterRequest,
) -> Result<Option<crate::ops::reattach::Restart>, Status> {
    if request.previous_worker_id.is_empty() {
        return Ok(None);
    }
    if request.held.len() > crate::ops::reattach::MAX_HELD_ATTEMPTS {
        return Err(Status::invalid_argument(format!(
            "a registration may name at most {} held attempts",
            crate::ops::reattach::MAX_HELD_ATTEMPTS
        )));
    }
    let previous = worker_id(&request.previous_worker_id)?;
    let held = request
        .held
        .iter()
        .map(|held| Ok((job_id(&held.job_id)?, held.attempt)))
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(Some(crate::ops::reattach::Restart { previous, held }))
}

pub fn attempt_refs(attempts: Vec<(JobId, u32)>) -> Vec<v1::AttemptRef> {
    attempts
        .into_iter()
        .map(|(job, attempt)| v1::AttemptRef {
            job_id: job.to_string(),
            attempt,
        })
        .collect()
}

pub fn stage(raw: &str) -> Result<Stage, Status> {
    Stage::parse(raw).map_err(Status::invalid_argument)
}

pub fn metric_points(points: Vec<v1::MetricPoint>) -> Vec<MetricPoint> {
    points
        .into_iter()
        .map(|p| MetricPoint {
            seq: p.seq,
            name: p.name,
            step: p.step,
            value: p.value,
        })
        .collect()
}

pub fn completion(request: &v1::CompleteRequest) -> Result<Completion, Status> {
    let outcome = match v1::Outcome::try_from(request.outcome) {
        Ok(v1::Outcome::Succeeded) => Outcome::Succeeded,
        Ok(v1::Outcome::Failed) => Outcome::Failed,
        Ok(v1::Outcome::Preempted) => Outcome::Preempted,
        Ok(v1::Outcome::Cancelled) => Outcome::Cancelled,
        Ok(v1::Outcome::PeerLost) => Outcome::PeerLost,
        Ok(v1::Outcome::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument("completion without an outcome"))
        }
    };
    Ok(Completion {
        outcome,
        exit_code: request.exit_code,
        error: truncate(&request.error, 4096),
        stderr_tail: truncate(&request.stderr_tail, 16 * 1024),
        metric_count: request.metric_count,
        duration_s: request.duration_s,
        rank: request.rank,
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = text.len() - max;
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[end..].to_owned()
}

/// What a leased job's spec is made of, taken under the state lock: the shared
/// definition and code files and a few numbers. The spec itself (the config as JSON
/// text, a copy of every code file) is built by [`job_spec`] after the lock is
/// released, so a lease holds the lock only to pick and record.
pub struct SpecParts {
    def: Arc<JobDefinition>,
    code: Option<Arc<CodeFiles>>,
    attempt: u32,
    timeout: Duration,
    stage_run: u64,
    idea_version: u32,
    rank: u32,
    world_size: u32,
    local_rank: u32,
    local_world_size: u32,
}

/// The parts of the spec of `rank` of `job` (its latest attempt).
pub fn spec_parts(state: &CoordinatorState, job: &JobRecord, rank: u32) -> SpecParts {
    let placed = job
        .gang
        .as_ref()
        .and_then(|gang| gang.ranks.get(rank as usize));
    let run = state.stage_runs.iter().find(|run| run.id == job.stage_run);
    SpecParts {
        def: Arc::clone(&job.def),
        code: run.map(|run| Arc::clone(&run.code)),
        attempt: job.attempts,
        timeout: job.timeout,
        stage_run: job.stage_run,
        idea_version: run.map_or(state.idea_version, |run| run.idea_version),
        rank,
        world_size: job.ranks,
        local_rank: placed.map_or(0, |r| r.local_rank),
        local_world_size: placed.map_or(1, |r| r.local_world_size),
    }
}

/// The job spec sent to a worker for a fresh lease.
pub fn job_spec(parts: SpecParts, workspace_dir: &str) -> v1::JobSpec {
    let def = &parts.def;
    let code_files = parts
        .code
        .map(|code| {
            code.files
                .iter()
                .map(|(name, content)| v1::CodeFile {
                    name: name.clone(),
                    content: content.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let kind = match (&def.resolved.get("trainer"), &def.resolved.get("command")) {
        (Some(trainer), _) => Some(v1::job_spec::Kind::Trainer(v1::TrainerJob {
            spec_json: trainer.to_string(),
        })),
        (None, Some(command)) => Some(v1::job_spec::Kind::Command(v1::CommandJob {
            argv: serde_json::from_value(serde_json::Value::clone(command)).unwrap_or_default(),
            env: def
                .resolved
                .get("env")
                .and_then(|env| serde_json::from_value(env.clone()).ok())
                .unwrap_or_default(),
        })),
        (None, None) => None,
    };
    v1::JobSpec {
        job_id: def.id.to_string(),
        attempt: parts.attempt,
        stage: def.stage.to_string(),
        method: def.variant.clone(),
        seed: def.seed,
        config_json: def.resolved.to_string(),
        sweep_point_json: serde_json::to_string(&def.sweep_point).unwrap_or_else(|_| "{}".into()),
        kind,
        code_files,
        workspace_dir: workspace_dir.to_owned(),
        timeout_ms: u64::try_from(parts.timeout.as_millis()).unwrap_or(u64::MAX),
        idea_version: parts.idea_version,
        fingerprint: def.fingerprint.clone(),
        stage_run: parts.stage_run,
        rank: parts.rank,
        world_size: parts.world_size,
        local_rank: parts.local_rank,
        local_world_size: parts.local_world_size,
    }
}

pub fn job_status(job: &JobRecord) -> v1::JobStatus {
    let (state, worker) = match &job.state {
        JobState::Queued { .. } => (v1::JobState::Queued, String::new()),
        JobState::Running { worker, .. } => (v1::JobState::Running, worker.to_string()),
        JobState::Succeeded { .. } => (v1::JobState::Succeeded, String::new()),
        JobState::Failed { .. } => (v1::JobState::Failed, String::new()),
        JobState::Cancelled => (v1::JobState::Cancelled, String::new()),
    };
    v1::JobStatus {
        job_id: job.def.id.to_string(),
        method: job.def.variant.clone(),
        seed: job.def.seed,
        sweep_point_json: serde_json::to_string(&job.def.sweep_point).unwrap_or_default(),
        state: state as i32,
        attempt: job.attempts,
        worker_id: worker,
        final_metrics: job.final_metrics().into_iter().collect(),
        error: job.error.clone(),
        stderr_tail: job.stderr_tail.clone(),
        duration_s: job.duration_s,
    }
}
