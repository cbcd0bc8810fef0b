//! The JSON the page loads: snapshots of the coordinator ([`expcluster_coordinator::service::snapshot`])
//! and the claims and idea from the workspace ([`crate::files`]). Each handler copies
//! under the state lock and serializes after it.

use crate::{files, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use expcluster_coordinator::service::snapshot::{
    job_state_name as state_name, Code, ThinnedSeries,
};
use expcluster_core::{JobId, Stage};
use expcluster_proto::v1;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A request the API cannot answer, with the reason as its body.
pub(crate) enum ApiError {
    BadRequest(String),
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message).into_response(),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, message).into_response(),
        }
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// A float for JSON: non-finite values (a diverged run) as null.
fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

fn series_json(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|v| number(*v)).collect())
}

/// GET /api/overview: the idea, every stage with its counts, every worker.
pub(crate) async fn overview(State(state): State<Arc<AppState>>) -> Json<Value> {
    let stages = state.coordinator.stages_view();
    let workers = state.coordinator.workers_view();
    Json(json!({
        "idea": stages.idea,
        "idea_version": stages.idea_version,
        "stages": stages.stages.iter().map(|s| json!({
            "stage": s.stage, "defined": s.defined, "submitted": s.submitted,
            "finished": s.finished, "completed_runs": s.completed_runs,
            "idea_version": s.idea_version, "primary_metric": s.primary_metric,
            "jobs": {"total": s.jobs_total, "queued": s.jobs_queued, "running": s.jobs_running,
                     "succeeded": s.jobs_succeeded, "failed": s.jobs_failed,
                     "cancelled": s.jobs_cancelled},
        })).collect::<Vec<_>>(),
        "workers": workers,
    }))
}

fn parse_stage(stage: &str) -> Result<Stage, ApiError> {
    Stage::parse(stage).map_err(ApiError::BadRequest)
}

fn parse_job(job: &str) -> Result<JobId, ApiError> {
    JobId::parse(job).map_err(ApiError::BadRequest)
}

/// The columns of a row of GET /api/stages/{stage}/jobs, in order; the last holds
/// the latest value of each metric of `metrics`, in that order.
const JOB_COLUMNS: [&str; 10] = [
    "job_id",
    "method",
    "seed",
    "sweep_point",
    "state",
    "attempt",
    "worker",
    "error",
    "duration_s",
    "metrics",
];

/// The most points of one series a snapshot carries: a curve of a few hundred
/// pixels needs no more, and the live stream adds points from there.
const SNAPSHOT_POINTS: usize = 1000;

/// GET /api/stages/{stage}/jobs: the latest run's jobs, compact: the column names
/// once, then one array per job (10,000 jobs are about half the bytes of objects
/// with repeated keys, and the page keeps them as they come).
pub(crate) async fn stage_jobs(
    State(state): State<Arc<AppState>>,
    Path(stage): Path<String>,
) -> Answer {
    let stage = parse_stage(&stage)?;
    let Some(jobs) = state.coordinator.stage_jobs(stage) else {
        return Ok(Json(json!({
            "stage": stage.to_string(), "submitted": false,
            "columns": JOB_COLUMNS, "metrics": [], "rows": [],
        })));
    };
    let metrics: Vec<&String> = jobs
        .iter()
        .flat_map(|job| job.final_metrics.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let values: Vec<Value> = metrics
                .iter()
                .map(|name| {
                    job.final_metrics
                        .get(*name)
                        .map_or(Value::Null, |v| number(*v))
                })
                .collect();
            // `{}` (no sweep) is shown as nothing; a point as its compact JSON text.
            let sweep_point = match job.sweep_point_json.as_str() {
                "" | "{}" | "null" => String::new(),
                text => serde_json::from_str::<Value>(text)
                    .map_or_else(|_| text.to_owned(), |value| value.to_string()),
            };
            json!([
                job.job_id,
                job.method,
                job.seed,
                sweep_point,
                state_name(job.state),
                job.attempt,
                job.worker_id,
                job.error,
                number(job.duration_s),
                values,
            ])
        })
        .collect();
    Ok(Json(json!({
        "stage": stage.to_string(), "submitted": true,
        "columns": JOB_COLUMNS, "metrics": metrics, "rows": rows,
    })))
}

fn thinned_json(series: &ThinnedSeries) -> Value {
    json!({"steps": series.steps, "values": series_json(&series.values), "len": series.len})
}

#[derive(serde::Deserialize)]
pub(crate) struct SeriesQuery {
    metric: String,
}

/// GET /api/stages/{stage}/series?metric=M: one metric's series of every job, each
/// thinned to [`SNAPSHOT_POINTS`] as `{steps, values, len}`.
pub(crate) async fn stage_series(
    State(state): State<Arc<AppState>>,
    Path(stage): Path<String>,
    Query(query): Query<SeriesQuery>,
) -> Answer {
    let stage = parse_stage(&stage)?;
    let jobs: Vec<Value> = state
        .coordinator
        .stage_series(stage, &query.metric, SNAPSHOT_POINTS)
        .iter()
        .filter_map(|job| {
            let series = job.series.get(&query.metric)?;
            Some(json!({
                "job_id": job.job_id, "variant": job.variant, "seed": job.seed,
                "attempt": job.attempt, "running": job.running,
                "series": thinned_json(series),
            }))
        })
        .collect();
    Ok(Json(json!({"metric": query.metric, "jobs": jobs})))
}

/// GET /api/jobs/{job}/series: every series of the job's latest attempt, each
/// thinned to [`SNAPSHOT_POINTS`].
pub(crate) async fn job_series(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
) -> Answer {
    let job = parse_job(&job)?;
    let view = state
        .coordinator
        .job_series(&job, SNAPSHOT_POINTS)
        .ok_or_else(|| ApiError::NotFound(format!("unknown job {job}")))?;
    let series: Map<String, Value> = view
        .series
        .iter()
        .map(|(name, series)| (name.clone(), thinned_json(series)))
        .collect();
    Ok(Json(json!({
        "job_id": view.job_id, "variant": view.variant, "seed": view.seed,
        "attempt": view.attempt, "running": view.running, "series": series,
    })))
}

#[derive(serde::Deserialize)]
pub(crate) struct LogQuery {
    stream: Option<String>,
    offset: Option<u64>,
    attempt: Option<u32>,
}

/// GET /api/jobs/{job}/log?stream=stdout&offset=N: a piece of the job's log (the live
/// one while it runs); the page then follows it over the event stream.
pub(crate) async fn job_log(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(query): Query<LogQuery>,
) -> Answer {
    let request = v1::JobLogRequest {
        job_id: job,
        attempt: query.attempt.unwrap_or(0),
        stream: query.stream.unwrap_or_else(|| "stdout".to_owned()),
        offset: query.offset.unwrap_or(0),
    };
    match state.coordinator.job_log(&request) {
        Ok(piece) => Ok(Json(json!({
            "text": String::from_utf8_lossy(&piece.content),
            "next_offset": piece.next_offset,
            "attempt": piece.attempt,
            "exists": piece.exists,
            "running": piece.attempt_running,
            "state": state_name(piece.job_state),
            "error": piece.error,
        }))),
        Err(status) if status.code() == Code::NotFound => {
            Err(ApiError::NotFound(status.message().to_owned()))
        }
        Err(status) => Err(ApiError::BadRequest(status.message().to_owned())),
    }
}

/// GET /api/claims: every `hypothesis_evaluated` event.
pub(crate) async fn claims(State(state): State<Arc<AppState>>) -> Json<Value> {
    let root = state.coordinator.workspace_root();
    let events =
        tokio::task::spawn_blocking(move || files::events_of(&root, &["hypothesis_evaluated"]))
            .await
            .unwrap_or_default();
    Json(json!({"verdicts": events}))
}

/// GET /api/idea: idea.json, idea.md, idea_evolution.md and the updates.
pub(crate) async fn idea(State(state): State<Arc<AppState>>) -> Json<Value> {
    let root = state.coordinator.workspace_root();
    Json(
        tokio::task::spawn_blocking(move || files::idea(&root))
            .await
            .unwrap_or(Value::Null),
    )
}
