//! Plain-text tables for the terminal.

use expcluster_proto::v1;

/// Formats a metric value compactly (nan and inf as such).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        }
    } else if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.4e}")
    } else {
        format!("{value:.4}")
    }
}

pub use expcluster_coordinator::service::snapshot::job_state_name as state_name;

/// A table of a stage's jobs with the last value of each metric.
pub fn jobs_table(status: &v1::StageStatusResponse) -> String {
    let mut metrics: Vec<&String> = status
        .jobs
        .iter()
        .flat_map(|job| job.final_metrics.keys())
        .collect();
    metrics.sort();
    metrics.dedup();
    let mut rows: Vec<Vec<String>> = vec![["job", "method", "seed", "state", "attempt"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(metrics.iter().map(|m| (*m).clone()))
        .collect()];
    for job in &status.jobs {
        let mut row = vec![
            job.job_id.clone(),
            job.method.clone(),
            job.seed.to_string(),
            state_name(job.state).to_owned(),
            job.attempt.to_string(),
        ];
        row.extend(metrics.iter().map(|m| {
            job.final_metrics
                .get(*m)
                .map_or("-".to_owned(), |v| format_value(*v))
        }));
        rows.push(row);
    }
    render(&rows)
}

pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A job as `status --json` prints it.
pub fn job_json(job: &v1::JobStatus) -> serde_json::Value {
    serde_json::json!({
        "job_id": job.job_id, "method": job.method, "seed": job.seed,
        "sweep_point": serde_json::from_str::<serde_json::Value>(&job.sweep_point_json).unwrap_or_default(),
        "state": state_name(job.state), "attempt": job.attempt, "worker_id": job.worker_id,
        // Sorted: the wire map has no order, and scripts diff this output.
        "metrics": job.final_metrics.iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().map(|(k, v)| (k.clone(), json_number(*v))).collect::<serde_json::Map<_, _>>(),
        "error": job.error, "duration_s": job.duration_s,
    })
}

/// A stage's status as `status --stage S --json` prints it.
pub fn stage_status_json(status: &v1::StageStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "stage": status.stage, "finished": status.finished, "idea_version": status.idea_version,
        "primary_metric": status.primary_metric,
        "jobs": status.jobs.iter().map(job_json).collect::<Vec<_>>(), "outputs": status.outputs,
    })
}

pub fn stage_overview_json(stage: &v1::StageOverview) -> serde_json::Value {
    serde_json::json!({
        "stage": stage.stage, "defined": stage.defined, "submitted": stage.submitted, "finished": stage.finished,
        "completed_runs": stage.completed_runs, "idea_version": stage.idea_version,
        "jobs": {"total": stage.jobs_total, "queued": stage.jobs_queued, "running": stage.jobs_running,
                 "succeeded": stage.jobs_succeeded, "failed": stage.jobs_failed, "cancelled": stage.jobs_cancelled},
    })
}

pub fn worker_json(worker: &v1::WorkerInfo) -> serde_json::Value {
    serde_json::json!({"worker_id": worker.worker_id, "hostname": worker.hostname, "slots": worker.slots, "busy": worker.busy, "last_seen_s": worker.last_seen_s})
}

/// JSON has no nan or inf: those become strings, as in the workspace's files.
pub fn json_number(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::json!(value)
    } else {
        serde_json::json!(format_value(value))
    }
}

/// The stages table of `status`.
pub fn stages_table(stages: &[v1::StageOverview]) -> String {
    let mut rows = vec![[
        "stage",
        "state",
        "jobs",
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
        "completed runs",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect::<Vec<_>>()];
    for stage in stages {
        let state = match (stage.defined, stage.submitted, stage.finished) {
            (false, false, _) => "not in config",
            (_, false, _) if stage.completed_runs > 0 => "completed",
            (_, false, _) => "not submitted",
            (_, true, false) => "running",
            (_, true, true) => "finished",
        };
        rows.push(vec![
            stage.stage.clone(),
            state.to_owned(),
            stage.jobs_total.to_string(),
            stage.jobs_queued.to_string(),
            stage.jobs_running.to_string(),
            stage.jobs_succeeded.to_string(),
            stage.jobs_failed.to_string(),
            stage.jobs_cancelled.to_string(),
            stage.completed_runs.to_string(),
        ]);
    }
    render(&rows)
}

/// The workers table of `status` and `workers`.
pub fn workers_table(workers: &[v1::WorkerInfo]) -> String {
    let mut rows = vec![vec![
        "worker".to_owned(),
        "host".into(),
        "slots".into(),
        "busy".into(),
        "last seen".into(),
    ]];
    for w in workers {
        rows.push(vec![
            w.worker_id.clone(),
            w.hostname.clone(),
            w.slots.to_string(),
            w.busy.to_string(),
            format!("{:.1}s ago", w.last_seen_s),
        ]);
    }
    render(&rows)
}
