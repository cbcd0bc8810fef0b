//! Stage summaries (`baseline_summary.json`, `research_summary.json`,
//! `ablation_summary.json`): descriptive statistics per method and metric, the
//! comparisons with Holm's correction, and text generated from those numbers.
//!
//! A summary is a pure function of (config, stage, per-job results): no clock, no
//! randomness, insertion-ordered keys. That is what lets `expcluster summarize`
//! recompute it from the stored results ([`stored`]) and get the same bytes.

pub mod analysis;
pub mod render;
pub mod stored;
pub mod text;

use crate::stage::results::JobOutcome;
use crate::store::workspace::{write_atomic, Workspace};
use analysis::{analyse, StageAnalysis, SUMMARY_ALPHA};
use expcluster_core::config::{Goal, LoadedConfig};
use expcluster_core::expand::VariantKind;
use expcluster_core::Stage;
use render::{methods_table, runs_table, statistical_tests};
use serde_json::{json, Value};
use std::io;

/// Writes the stage's summary file (none for the implementation stage); returns its
/// path relative to the workspace.
pub fn write_summary(
    workspace: &Workspace,
    loaded: &LoadedConfig,
    stage: Stage,
    outcomes: &[JobOutcome],
) -> io::Result<Option<String>> {
    let Some(file) = stage.summary_file() else {
        return Ok(None);
    };
    let bytes = summary_bytes(&analyse(loaded, stage, outcomes), loaded);
    write_atomic(&workspace.root().join(file), &bytes)?;
    Ok(Some(file.to_owned()))
}

/// The exact bytes of a summary file.
pub fn summary_bytes(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(&summary_json(analysis, loaded))
        .unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text.into_bytes()
}

/// The summary of a stage as JSON.
pub fn summary_json(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Value {
    let primary = &analysis.primary_metric;
    let goal = loaded.config.goal_of(primary);
    let mut summary = json!({
        "stage": analysis.stage,
        "primary_metric": {"name": primary, "goal": match goal { Goal::Max => "max", Goal::Min => "min" }},
        "proposed": analysis.proposed,
        "runs": runs_table(analysis),
        "methods": methods_table(analysis),
    });
    let best = text::best_group(analysis, loaded);
    let findings = text::findings(analysis, loaded);
    let Value::Object(map) = &mut summary else {
        return summary;
    };
    match analysis.stage {
        Stage::Implementation | Stage::Baselines => {
            map.insert(
                "best_method".into(),
                best.map(|i| analysis.groups[i].variant.clone()).into(),
            );
            map.insert(
                "statistical_tests".into(),
                statistical_tests(analysis, loaded),
            );
            map.insert("analysis".into(), findings.join(" ").into());
        }
        Stage::Full => {
            map.insert(
                "best_method".into(),
                best.map(|i| analysis.groups[i].variant.clone()).into(),
            );
            map.insert(
                "best_configuration".into(),
                render::best_configuration(analysis, loaded),
            );
            map.insert("key_findings".into(), json!(findings));
            map.insert(
                "statistical_tests".into(),
                statistical_tests(analysis, loaded),
            );
            map.insert("learning_curves".into(), render::learning_curves(analysis));
            map.insert("analysis".into(), findings.join(" ").into());
        }
        Stage::Ablations => {
            let ablations: Vec<Value> = (0..analysis.groups.len())
                .filter(|&i| analysis.groups[i].kind == VariantKind::Ablation)
                .map(|i| render::ablation_entry(analysis, loaded, i))
                .collect();
            map.insert(
                "analysis".into(),
                ablation_analysis(analysis, loaded, &ablations).into(),
            );
            map.insert("ablations".into(), Value::Array(ablations));
            map.insert(
                "statistical_tests".into(),
                statistical_tests(analysis, loaded),
            );
        }
    }
    summary
}

/// The ablation stage's `analysis`: the most critical component by the primary
/// metric (the largest significant degradation), or that none mattered.
fn ablation_analysis(analysis: &StageAnalysis, loaded: &LoadedConfig, entries: &[Value]) -> String {
    let primary = &analysis.primary_metric;
    let goal = loaded.config.goal_of(primary);
    let mut worst: Option<(&Value, f64)> = None;
    for entry in entries {
        let impact = &entry["impact"][primary.as_str()];
        let Some(diff) = impact["difference"].as_f64() else {
            continue;
        };
        if impact["direction"] != "worse" {
            continue;
        }
        let harm = if goal == Goal::Max { -diff } else { diff };
        if worst.is_none_or(|(_, current)| harm > current) {
            worst = Some((entry, harm));
        }
    }
    let mut sentences = Vec::new();
    match worst {
        Some((entry, _)) => sentences.push(format!(
            "The most critical component is the one removed by {} ({}): {}",
            entry["name"].as_str().unwrap_or_default(),
            entry["change"].as_str().unwrap_or_default(),
            entry["conclusion"].as_str().unwrap_or_default()
        )),
        None => sentences.push(format!(
            "No ablation made {primary} significantly worse (α = {SUMMARY_ALPHA}, Holm over {} comparisons).",
            analysis.family_size
        )),
    }
    for entry in entries {
        if worst.is_some_and(|(w, _)| std::ptr::eq(w, entry)) {
            continue;
        }
        sentences.push(entry["conclusion"].as_str().unwrap_or_default().to_owned());
    }
    let reference_stats = analysis
        .partner(&analysis.proposed, 0)
        .map(|r| analysis.groups[r].describe(primary));
    if let Some(stats) = reference_stats {
        sentences.push(format!(
            "Reference {}: {primary} {}.",
            analysis.proposed,
            text::describe_short(&stats)
        ));
    }
    sentences.join(" ")
}
