//! Stage summaries (`baseline_summary.json`, `research_summary.json`,
//! `ablation_summary.json`). Placeholder shape until the statistics land: per method
//! and metric n, n_failed, mean and std.

use crate::results::{group_by_variant, metric_names, JobOutcome};
use crate::workspace::{write_atomic, Workspace};
use expcluster_core::config::LoadedConfig;
use expcluster_core::Stage;
use serde_json::{json, Map, Value};
use std::io;

pub fn write_summary(
    workspace: &Workspace,
    _loaded: &LoadedConfig,
    stage: Stage,
    outcomes: &[JobOutcome],
) -> io::Result<Option<String>> {
    let Some(file) = stage.summary_file() else {
        return Ok(None);
    };
    let mut methods = Map::new();
    for group in group_by_variant(outcomes) {
        let mut per_metric = Map::new();
        for metric in metric_names(outcomes) {
            let values: Vec<f64> = group.finals(&metric).into_iter().filter(|v| !v.is_nan()).collect();
            let n = values.len();
            let mean = values.iter().sum::<f64>() / n.max(1) as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.saturating_sub(1).max(1)) as f64;
            per_metric.insert(metric.clone(), json!({"n": n, "n_failed": group.jobs.len() - n, "mean": mean, "std": var.sqrt()}));
        }
        methods.insert(group.file_stem(), Value::Object(per_metric));
    }
    let summary = json!({"stage": stage, "methods": methods});
    let bytes = serde_json::to_vec_pretty(&summary).map_err(io::Error::other)?;
    write_atomic(&workspace.root().join(file), &bytes)?;
    Ok(Some(file.to_owned()))
}
