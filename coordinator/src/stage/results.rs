//! A finished stage's result arrays, laid out as the seed protocol shows.
//!
//! - `<prefix>_<variant>[_p<k>]_<metric>.npy`: the final value of each seed (1-D,
//!   NaN for a failed seed, so failures stay visible);
//! - `<prefix>_<variant>[_p<k>]_<metric>_curves.npy`: learning curves `[seeds, steps]`;
//! - for the implementation stage, the seed's `train_losses.npy`,
//!   `test_accuracies.npy`, … from the first seed, and copies of the job's own files;
//! - `index.json`: which array came from which jobs (and sweep point `p<k>`).
//!
//! The summaries with statistics are written by [`crate::stage::summary`].

use crate::store::workspace::{write_atomic, write_npy_1d, write_npy_2d, Workspace};
use expcluster_core::config::LoadedConfig;
use expcluster_core::expand::sweep_label;
use expcluster_core::json_float::{map_from_json, series_from_json};
use expcluster_core::{JobDefinition, Stage};
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

/// A job's results, as the stage aggregation needs them.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// Shared with the job's record: aggregating a stage copies no definitions.
    pub def: Arc<JobDefinition>,
    pub succeeded: bool,
    pub error: String,
    pub series: BTreeMap<String, Vec<f64>>,
    pub final_metrics: BTreeMap<String, f64>,
    pub artifacts: Vec<String>,
}

impl JobOutcome {
    /// A job's outcome from its stored results line (`None`: no line, although it
    /// succeeded, so it is counted as failed).
    pub fn from_stored(
        def: &Arc<JobDefinition>,
        succeeded: bool,
        error: &str,
        stored: Option<Value>,
    ) -> Self {
        let mut outcome = JobOutcome {
            def: Arc::clone(def),
            succeeded,
            error: error.to_owned(),
            series: BTreeMap::new(),
            final_metrics: BTreeMap::new(),
            artifacts: Vec::new(),
        };
        if !succeeded {
            return outcome;
        }
        match stored {
            Some(stored) => {
                outcome.series = series_from_json(&stored["series"]);
                outcome.final_metrics = map_from_json(&stored["final_metrics"]);
                outcome.artifacts =
                    serde_json::from_value(stored["artifacts"].clone()).unwrap_or_default();
            }
            None => {
                tracing::warn!(job = %def.id, "a completed job's results line is missing from experiment_results/job_results.jsonl: counting it as failed");
                outcome.succeeded = false;
                outcome.error =
                    "its results line is missing from experiment_results/job_results.jsonl: \
                                 submit the stage again with --rerun to run it again"
                        .to_owned();
            }
        }
        outcome
    }
}

/// One group of seeds: a variant at one sweep point.
pub struct SeedGroup<'a> {
    pub variant: String,
    pub point_index: Option<usize>,
    pub point_label: String,
    pub jobs: Vec<&'a JobOutcome>,
}

impl SeedGroup<'_> {
    /// The name part of this group's files: `<variant>` or `<variant>_p<k>`.
    pub fn file_stem(&self) -> String {
        match self.point_index {
            Some(index) => format!("{}_p{index}", self.variant),
            None => self.variant.clone(),
        }
    }

    /// The final value of `metric` per seed; NaN for failed seeds or a missing metric.
    pub fn finals(&self, metric: &str) -> Vec<f64> {
        self.jobs
            .iter()
            .map(|job| {
                if job.succeeded {
                    job.final_metrics.get(metric).copied().unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                }
            })
            .collect()
    }
}

/// Groups outcomes by (variant, sweep point), in the order they were expanded.
pub fn group_by_variant(outcomes: &[JobOutcome]) -> Vec<SeedGroup<'_>> {
    let mut points: Vec<String> = Vec::new();
    for outcome in outcomes {
        let label = sweep_label(&outcome.def.sweep_point);
        if !points.contains(&label) {
            points.push(label);
        }
    }
    let mut groups: IndexMap<(String, String), Vec<&JobOutcome>> = IndexMap::new();
    for outcome in outcomes {
        groups
            .entry((
                outcome.def.variant.clone(),
                sweep_label(&outcome.def.sweep_point),
            ))
            .or_default()
            .push(outcome);
    }
    groups
        .into_iter()
        .map(|((variant, label), jobs)| SeedGroup {
            variant,
            point_index: (points.len() > 1)
                .then(|| points.iter().position(|p| *p == label).unwrap_or(0)),
            point_label: label,
            jobs,
        })
        .collect()
}

/// Every metric name any job of the stage produced, sorted.
pub fn metric_names(outcomes: &[JobOutcome]) -> Vec<String> {
    let mut names: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.series.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes the stage's arrays, index and summary; returns the files written,
/// relative to the workspace.
pub fn write_stage_results(
    workspace: &Workspace,
    loaded: &LoadedConfig,
    stage: Stage,
    outcomes: &[JobOutcome],
) -> io::Result<Vec<String>> {
    let results = workspace.results_dir();
    let prefix = stage.results_prefix();
    let metrics = metric_names(outcomes);
    let mut outputs = Vec::new();
    let mut index_entries = serde_json::Map::new();
    for group in group_by_variant(outcomes) {
        let jobs: Vec<Value> = group.jobs.iter().map(|j| json!({"job_id": j.def.id, "seed": j.def.seed, "fingerprint": j.def.fingerprint, "succeeded": j.succeeded})).collect();
        for metric in &metrics {
            let name = format!("{prefix}_{}_{metric}.npy", group.file_stem());
            write_npy_1d(&results.join(&name), &group.finals(metric))?;
            index_entries.insert(name.clone(), json!({"stage": stage, "variant": group.variant, "sweep_point": group.point_label, "metric": metric, "kind": "final_per_seed", "jobs": jobs}));
            outputs.push(format!("experiment_results/{name}"));
            let curves: Vec<Vec<f64>> = group
                .jobs
                .iter()
                .map(|job| {
                    if job.succeeded {
                        job.series.get(metric).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            if curves.iter().any(|curve| curve.len() > 1) {
                let name = format!("{prefix}_{}_{metric}_curves.npy", group.file_stem());
                write_npy_2d(&results.join(&name), &curves)?;
                index_entries.insert(name.clone(), json!({"stage": stage, "variant": group.variant, "sweep_point": group.point_label, "metric": metric, "kind": "curves_seeds_by_step", "jobs": jobs}));
                outputs.push(format!("experiment_results/{name}"));
            }
        }
    }
    if stage == Stage::Implementation {
        outputs.extend(write_seed_named_arrays(
            workspace,
            outcomes,
            &mut index_entries,
        )?);
    }
    update_index(workspace, stage, index_entries)?;
    outputs.push("experiment_results/index.json".to_owned());
    if let Some(summary) = crate::stage::summary::write_summary(workspace, loaded, stage, outcomes)?
    {
        outputs.push(summary);
    }
    Ok(outputs)
}

/// The seed's `train_losses.npy`-style arrays, from the first successful job.
fn write_seed_named_arrays(
    workspace: &Workspace,
    outcomes: &[JobOutcome],
    index: &mut serde_json::Map<String, Value>,
) -> io::Result<Vec<String>> {
    let Some(first) = outcomes.iter().find(|o| o.succeeded) else {
        return Ok(Vec::new());
    };
    let results = workspace.results_dir();
    let mut outputs = Vec::new();
    for (metric, values) in &first.series {
        let name = format!("{}.npy", plural(metric));
        write_npy_1d(&results.join(&name), values)?;
        index.insert(name.clone(), json!({"stage": "implementation", "metric": metric, "kind": "series", "jobs": [first.def.id]}));
        outputs.push(format!("experiment_results/{name}"));
    }
    // The job's own files take precedence over arrays made from its metric lines.
    let job_dir = workspace.job_results_dir(first.def.id.as_str(), &first.def.fingerprint);
    for artifact in &first.artifacts {
        let bytes = std::fs::read(job_dir.join(artifact))?;
        write_atomic(&results.join(artifact), &bytes)?;
        index.insert(
            artifact.clone(),
            json!({"stage": "implementation", "kind": "job_file", "jobs": [first.def.id]}),
        );
        let entry = format!("experiment_results/{artifact}");
        if !outputs.contains(&entry) {
            outputs.push(entry);
        }
    }
    Ok(outputs)
}

/// `train_loss` → `train_losses`, `test_accuracy` → `test_accuracies` (seed names).
pub fn plural(metric: &str) -> String {
    if let Some(stem) = metric.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            return format!("{stem}ies");
        }
    }
    if metric.ends_with('s') || metric.ends_with('x') {
        return format!("{metric}es");
    }
    format!("{metric}s")
}

fn update_index(
    workspace: &Workspace,
    stage: Stage,
    entries: serde_json::Map<String, Value>,
) -> io::Result<()> {
    let path = workspace.results_dir().join("index.json");
    let mut index: serde_json::Map<String, Value> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    index.retain(|_, entry| entry["stage"] != json!(stage));
    index.extend(entries);
    let bytes = serde_json::to_vec_pretty(&Value::Object(index)).map_err(io::Error::other)?;
    write_atomic(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn plurals_follow_the_seed_names() {
        assert_eq!(plural("train_loss"), "train_losses");
        assert_eq!(plural("test_accuracy"), "test_accuracies");
        assert_eq!(plural("val_f1"), "val_f1s");
        assert_eq!(plural("delay"), "delays");
    }
}
