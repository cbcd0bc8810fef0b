//! What the CLI's `status` and `logs` read: an overview of every stage, and pieces
//! of a job's stored log files. Read-only views of the state and the workspace.

use super::convert;
use crate::ops::CoordinatorState;
use crate::state::lifecycle::JobState;
use crate::store::live_logs;
use expcluster_core::Stage;
use expcluster_proto::v1;
use std::io::{Read, Seek, SeekFrom};
use tonic::Status;

/// The most a `JobLog` answer carries (a follower asks again from `next_offset`).
const LOG_CHUNK_BYTES: u64 = 1024 * 1024;

/// One overview per stage, in protocol order.
pub fn stage_overviews(state: &CoordinatorState) -> v1::ListStagesResponse {
    let config = state.load_config().ok();
    let stages = Stage::ALL
        .into_iter()
        .map(|stage| {
            let defined = config.as_ref().is_some_and(|loaded| {
                expcluster_core::config::stage_is_defined(&loaded.config, stage)
            });
            // Every run is restored at start-up, finished or not (recovery.rs).
            let completed_runs = state
                .stage_runs
                .iter()
                .filter(|run| run.stage == stage && run.finished)
                .count() as u32;
            let mut overview = v1::StageOverview {
                stage: stage.to_string(),
                defined,
                completed_runs,
                primary_metric: config
                    .as_ref()
                    .map(|l| l.config.primary_metric.name.clone())
                    .unwrap_or_default(),
                ..Default::default()
            };
            if let Some(run) = state.latest_run(stage) {
                overview.submitted = true;
                overview.finished = run.finished;
                overview.idea_version = run.idea_version;
                overview.jobs_total = run.jobs.len() as u32;
                for job in run.jobs.iter().filter_map(|id| state.jobs.get(id)) {
                    let counter = match v1::JobState::try_from(convert::job_status(job).state) {
                        Ok(v1::JobState::Queued) => &mut overview.jobs_queued,
                        Ok(v1::JobState::Running) => &mut overview.jobs_running,
                        Ok(v1::JobState::Succeeded) => &mut overview.jobs_succeeded,
                        Ok(v1::JobState::Failed) => &mut overview.jobs_failed,
                        Ok(v1::JobState::Cancelled) => &mut overview.jobs_cancelled,
                        Ok(v1::JobState::Unspecified) | Err(_) => continue,
                    };
                    *counter += 1;
                }
            }
            overview
        })
        .collect();
    v1::ListStagesResponse {
        stages,
        idea: state.workspace.idea_name(),
        idea_version: state.idea_version,
    }
}

/// A piece of `logs/<job>.a<attempt>.<stream>.log` from `offset`: the final log once
/// the attempt uploaded it, the live one (see [`crate::store::live_logs`]) while it runs.
pub fn job_log(
    state: &CoordinatorState,
    request: &v1::JobLogRequest,
) -> Result<v1::JobLogResponse, Status> {
    let job_id = convert::job_id(&request.job_id)?;
    live_logs::check_stream(&request.stream)?;
    let job = state.jobs.get(&job_id).ok_or_else(|| {
        Status::not_found(format!(
            "unknown job {job_id}: list the jobs with `expcluster status --stage <stage>`"
        ))
    })?;
    let attempt = if request.attempt == 0 {
        job.attempts
    } else {
        request.attempt
    };
    let status = convert::job_status(job);
    let attempt_running =
        matches!(&job.state, JobState::Running { attempt: running, .. } if *running == attempt);
    let mut answer = v1::JobLogResponse {
        next_offset: request.offset,
        attempt,
        job_state: status.state,
        stderr_tail: status.stderr_tail,
        attempt_running,
        latest_attempt: job.attempts,
        error: status.error,
        ..Default::default()
    };
    let logs = state.workspace.logs_dir();
    let Some(stored) = live_logs::stored_log(&logs, &job_id, attempt, &request.stream) else {
        return Ok(answer);
    };
    let Ok(mut file) = std::fs::File::open(&stored.path) else {
        // Replaced between the check and the open (the final upload landed): the next
        // poll reads the final log.
        return Ok(answer);
    };
    answer.exists = true;
    let read = file
        .seek(SeekFrom::Start(request.offset))
        .and_then(|_| file.take(LOG_CHUNK_BYTES).read_to_end(&mut answer.content));
    read.map_err(|err| Status::internal(format!("cannot read {}: {err}", stored.path.display())))?;
    answer.next_offset = request.offset + answer.content.len() as u64;
    Ok(answer)
}

/// The series of a job's latest attempt as the state holds them (live while it
/// runs; kept after it ends until the job's next lease).
pub fn job_metrics(
    state: &CoordinatorState,
    request: &v1::JobMetricsRequest,
) -> Result<v1::JobMetricsResponse, Status> {
    let job_id = convert::job_id(&request.job_id)?;
    let job = state.jobs.get(&job_id).ok_or_else(|| {
        Status::not_found(format!(
            "unknown job {job_id}: list the jobs with `expcluster status --stage <stage>`"
        ))
    })?;
    let keep = match request.max_points {
        0 => usize::MAX,
        max => max as usize,
    };
    let series = job
        .series
        .iter()
        .filter(|(name, _)| request.metric.is_empty() || **name == request.metric)
        .map(|(name, values)| {
            let first = values.len().saturating_sub(keep);
            v1::MetricSeries {
                name: name.clone(),
                values: values[first..].to_vec(),
                first_step: first as u64,
                points_total: values.len() as u64,
            }
        })
        .collect();
    Ok(v1::JobMetricsResponse {
        job_id: job_id.to_string(),
        attempt: job.attempts,
        job_state: convert::job_status(job).state,
        attempt_running: matches!(job.state, JobState::Running { .. }),
        stage_run: job.stage_run,
        fingerprint: job.def.fingerprint.clone(),
        series,
    })
}
