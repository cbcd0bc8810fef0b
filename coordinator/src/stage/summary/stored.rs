//! The inputs of a finished stage's summary, rebuilt from the workspace alone: the
//! research log says which run of the stage was last (and with which code digest)
//! and how each of its jobs ended; the config expands that run's jobs again; each
//! successful job's line in `experiment_results/job_results.jsonl` holds its values
//! (or, in a workspace no coordinator of this version has opened yet, its
//! `experiment_results/jobs/<id>/<fingerprint>/metrics.json`). This is what `expcluster summarize` feeds to the same summary code the
//! coordinator uses, so the recomputed file is identical to the stored one.

use crate::stage::results::JobOutcome;
use crate::store::results_file::{read_line, scan, LineKey, LineRef};
use crate::store::workspace::Workspace;
use expcluster_core::config::LoadedConfig;
use expcluster_core::expand::{expand_stage, StageRequest};
use expcluster_core::Stage;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("the research log has no run of the {stage} stage: run it with `expcluster submit --stage {stage}` first")]
    NeverRan { stage: Stage },
    #[error("run {run} of the {stage} stage has not finished: wait for it (`expcluster status --stage {stage}`) or cancel it")]
    Unfinished { stage: Stage, run: u64 },
    #[error("job {job} last succeeded with another fingerprint: config.yaml or the code changed since the {stage} stage ran; submit the stage again instead")]
    Changed { stage: Stage, job: String },
    #[error("{0}")]
    Config(String),
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
}

/// The outcomes of the latest finished run of `stage`, in the order the coordinator
/// saw them.
pub fn stage_outcomes(
    workspace: &Workspace,
    loaded: &LoadedConfig,
    stage: Stage,
) -> Result<Vec<JobOutcome>, StoredError> {
    let events = read_events(workspace)?;
    let started = events
        .iter()
        .rev()
        .find(|e| e["type"] == "stage_started" && e["stage"] == stage.as_str())
        .ok_or(StoredError::NeverRan { stage })?;
    let run = started["stage_run"].as_u64().unwrap_or(0);
    let finished = events.iter().any(|e| {
        e["type"] == "experiment_completed"
            && e["stage"] == stage.as_str()
            && e["stage_run"].as_u64() == Some(run)
    });
    if !finished {
        return Err(StoredError::Unfinished { stage, run });
    }
    let code_digest = started["code_digest"].as_str().unwrap_or_default();
    // A second look ran more seeds than config.yaml's `seeds`: its start says how many.
    let second_look = match (started["look"].as_u64(), started["seeds"].as_u64()) {
        (Some(2), Some(seeds)) => u32::try_from(seeds).ok(),
        _ => None,
    };
    let extended = second_look.map(|seeds| loaded.with_stage_seeds(stage, seeds));
    let loaded = extended.as_ref().unwrap_or(loaded);
    let definitions = expand_stage(loaded, StageRequest { stage, code_digest })
        .map_err(|err| StoredError::Config(err.to_string()))?;
    let results = StoredResults::read(workspace)?;
    let mut outcomes = Vec::with_capacity(definitions.len());
    for def in definitions {
        let last = events.iter().rev().find(|e| {
            (e["type"] == "job_completed" || e["type"] == "job_cancelled")
                && e["job_id"] == def.id.as_str()
        });
        let stored = match last {
            Some(event) if event["type"] == "job_completed" && event["status"] == "succeeded" => {
                if event["fingerprint"] != def.fingerprint.as_str() {
                    return Err(StoredError::Changed {
                        stage,
                        job: def.id.to_string(),
                    });
                }
                Some(results.of(workspace, event))
            }
            _ => None,
        };
        let succeeded = stored.is_some();
        outcomes.push(JobOutcome::from_stored(
            &std::sync::Arc::new(def),
            succeeded,
            "",
            stored.flatten(),
        ));
    }
    Ok(outcomes)
}

/// `job_results.jsonl` and every line's key (none if there is no such file yet).
struct StoredResults {
    file: Option<std::fs::File>,
    lines: HashMap<LineKey, LineRef>,
}

impl StoredResults {
    fn read(workspace: &Workspace) -> Result<Self, StoredError> {
        let path = workspace.job_results_path();
        let io_error = |err: std::io::Error| StoredError::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    file: None,
                    lines: HashMap::new(),
                })
            }
            Err(err) => return Err(io_error(err)),
        };
        let (lines, _) = scan(&file).map_err(io_error)?;
        Ok(Self {
            file: Some(file),
            lines: lines.into_iter().collect(),
        })
    }

    /// The stored results of the attempt `event` (a `job_completed`) reports.
    fn of(&self, workspace: &Workspace, event: &Value) -> Option<Value> {
        let key = LineKey::of_event(event)?;
        match (&self.file, self.lines.get(&key)) {
            (Some(file), Some(at)) => read_line(file, *at).ok(),
            _ => crate::store::job_metrics::legacy_results(workspace, &key),
        }
    }
}

/// Every complete event of `research_log.jsonl`, read without opening it for writing
/// (a torn last line is skipped, not repaired: that is the coordinator's job).
fn read_events(workspace: &Workspace) -> Result<Vec<Value>, StoredError> {
    let path = workspace.research_log_path();
    let text = std::fs::read_to_string(&path).map_err(|err| StoredError::Io {
        path: path.display().to_string(),
        reason: err.to_string(),
    })?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// What [`recompute`] did.
#[derive(Debug, Clone)]
pub struct Recomputed {
    /// The summary file, relative to the workspace.
    pub file: String,
    pub jobs: usize,
    pub jobs_failed: usize,
    /// Whether the file already had exactly these bytes.
    pub unchanged: bool,
}

/// Recomputes and rewrites `stage`'s summary from the stored per-job results. The
/// caller must hold the workspace lock (no coordinator may be writing).
pub fn recompute(
    workspace: &Workspace,
    loaded: &LoadedConfig,
    stage: Stage,
) -> Result<Recomputed, StoredError> {
    let Some(file) = stage.summary_file() else {
        return Err(StoredError::Config(format!(
            "the {stage} stage has no summary file (only baselines, full and ablations do)"
        )));
    };
    let outcomes = stage_outcomes(workspace, loaded, stage)?;
    let bytes = super::summary_bytes(&super::analysis::analyse(loaded, stage, &outcomes), loaded);
    let path = workspace.root().join(file);
    let unchanged = std::fs::read(&path).is_ok_and(|old| old == bytes);
    if !unchanged {
        crate::store::workspace::write_atomic(&path, &bytes).map_err(|err| StoredError::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
    }
    Ok(Recomputed {
        file: file.to_owned(),
        jobs: outcomes.len(),
        jobs_failed: outcomes.iter().filter(|o| !o.succeeded).count(),
        unchanged,
    })
}
