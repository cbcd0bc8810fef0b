//! A succeeded attempt's line in `experiment_results/job_results.jsonl`
//! ([`crate::store::results_file`]), and its repair after a crash.
//!
//! The line is appended, and made durable by the group commit, before the research
//! log's `job_completed` event that says the attempt succeeded, and both before the
//! completion is acknowledged. A crash inside that group-commit round can still leave
//! the event on disk without the line (the kernel may write the log back first), so on
//! start-up recovery rebuilds the missing line of each latest success from the
//! attempt's metric spool (`.expcluster/metrics/<job>.a<N>.jsonl`, every point synced
//! before it was acknowledged) and the event. A workspace written before this file
//! existed has a `jobs/<id>/<fingerprint>/metrics.json` per success instead: recovery
//! copies each into a line the same way.

use crate::state::records::JobRecord;
use crate::store::metric_spool::MetricSpool;
use crate::store::results_file::{LineKey, LineRef, ResultsFile};
use crate::store::workspace::Workspace;
use expcluster_core::expand::VariantKind;
use expcluster_core::json_float::{map_to_json, series_to_json};
use expcluster_core::{JobDefinition, JobId, Stage};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// What a results line holds besides the job's definition and series.
pub struct AttemptResult<'a> {
    pub stage_run: u64,
    pub attempt: u32,
    pub artifacts: &'a [String],
    pub duration_s: f64,
}

/// A job's results line (ending in a newline).
pub fn render(
    def: &JobDefinition,
    result: &AttemptResult<'_>,
    series: &BTreeMap<String, Vec<f64>>,
) -> io::Result<Vec<u8>> {
    /// The line's fields, in the order they have always had, serialized from
    /// references: a `json!` tree of them copied the definition's sweep point and
    /// strings on every completion, under the state lock.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        job_id: &'a JobId,
        stage_run: u64,
        stage: Stage,
        variant: &'a str,
        kind: &'a VariantKind,
        seed: u64,
        sweep_point: &'a IndexMap<String, Value>,
        fingerprint: &'a str,
        attempt: u32,
        series: Value,
        final_metrics: Value,
        artifacts: &'a [String],
        duration_s: f64,
    }
    let final_metrics: BTreeMap<String, f64> = series
        .iter()
        .filter_map(|(name, values)| values.last().map(|last| (name.clone(), *last)))
        .collect();
    let record = Line {
        job_id: &def.id,
        stage_run: result.stage_run,
        stage: def.stage,
        variant: &def.variant,
        kind: &def.kind,
        seed: def.seed,
        sweep_point: &def.sweep_point,
        fingerprint: &def.fingerprint,
        attempt: result.attempt,
        series: series_to_json(series),
        final_metrics: map_to_json(&final_metrics),
        artifacts: result.artifacts,
        duration_s: result.duration_s,
    };
    let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// A succeeded attempt as the research log recorded it, for [`repair`].
pub struct Success<'a> {
    pub job: JobId,
    pub event: &'a Value,
}

/// What an older version stored for the attempt `key` in
/// `experiment_results/jobs/<id>/<fingerprint>/metrics.json` (the same fields as a
/// results line), if that file is intact and is of this attempt.
pub fn legacy_results(workspace: &Workspace, key: &LineKey) -> Option<Value> {
    let path = workspace
        .job_results_dir(&key.job_id, &key.fingerprint)
        .join("metrics.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (stored["stage_run"].as_u64() == Some(key.stage_run)
        && stored["attempt"].as_u64() == Some(u64::from(key.attempt)))
    .then_some(stored)
}

/// Appends (durably) the results line of `success`, which a crash lost or an older
/// version kept in `metrics.json`, and returns where it is; `None` if it cannot be
/// rebuilt.
///
/// `def` is the job's definition; a series from the spool is only trusted if its final
/// values are the ones the log recorded (a spool reused by a later attempt of the same
/// name would not be), otherwise the line stays missing and the stage counts the job
/// as failed.
pub fn repair(
    workspace: &Workspace,
    results: &mut ResultsFile,
    def: &JobDefinition,
    success: &Success<'_>,
) -> io::Result<Option<LineRef>> {
    let event = success.event;
    let Some(key) = LineKey::of_event(event) else {
        return Ok(None);
    };
    let (stage_run, attempt) = (key.stage_run, key.attempt);
    if let Some(stored) = legacy_results(workspace, &key) {
        let mut line = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        line.push(b'\n');
        return results.append(&line).map(Some);
    }
    let mut scratch = JobRecord::new(def.clone(), 1, std::time::Duration::ZERO, stage_run);
    let spool = MetricSpool::path(&workspace.state_dir(), &success.job, attempt);
    replay_spool(&mut scratch, &spool);
    let logged = expcluster_core::json_float::map_from_json(&event["metrics"]);
    let finals = scratch.final_metrics();
    let same = logged.len() == finals.len()
        && logged.iter().all(|(name, value)| {
            finals
                .get(name)
                .is_some_and(|v| v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()))
        });
    if !same {
        tracing::error!(job = %success.job, attempt, spool = %spool.display(), "cannot rebuild the job's results: the spool does not match the research log");
        return Ok(None);
    }
    let artifacts: Vec<String> =
        serde_json::from_value(event["artifacts"].clone()).unwrap_or_default();
    let result = AttemptResult {
        stage_run,
        attempt,
        artifacts: &artifacts,
        duration_s: event["duration_s"].as_f64().unwrap_or(0.0),
    };
    let at = results.append(&render(def, &result, &scratch.series)?)?;
    tracing::warn!(job = %success.job, attempt, "rebuilt the job's results line from the spool and the research log");
    Ok(Some(at))
}

/// Reloads an attempt's acknowledged metric points; a torn last line (a crash while
/// appending, never acknowledged) is ignored and truncated away.
pub(crate) fn replay_spool(job: &mut JobRecord, path: &Path) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = file.set_len(complete as u64);
        }
    }
    for line in bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
    {
        let Ok(Value::Array(fields)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let (Some(seq), Some(name), Some(step), Some(value)) = (
            fields.first().and_then(Value::as_u64),
            fields.get(1).and_then(Value::as_str),
            fields.get(2).and_then(Value::as_u64),
            fields
                .get(3)
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if seq != job.next_seq {
            continue;
        }
        job.record_point(name, step, value);
        job.next_seq += 1;
    }
}
