//! A stage's job matrix, sized from arithmetic alone, before anything is expanded.
//!
//! Expansion allocates per job (its definition) and per variant and sweep point (the
//! resolved job, which that point's seeds share), so two limits bound it:
//! `jobs_per_stage` on variants × sweep points × seeds, and `stage_bytes` on the
//! resolved jobs, an upper bound of one resolved job's size × variants × sweep points.
//! Every product is multiplied with overflow checks. Validation checks the matrix, and
//! expansion again before it allocates, so a 10^7-job sweep costs a multiplication.

use crate::config::{ExperimentConfig, LoadedConfig, Overrides, StageSpec};
use crate::config_error::ConfigError;
use crate::config_limits::{how_to_raise, VALUE_COST};
use crate::ids::Stage;
use serde_json::Value;

/// How many variants a stage runs, as `expand_stage` lists them: the methods, or the
/// ablations and the proposed method as their reference.
pub fn stage_variant_count(config: &ExperimentConfig, stage: Stage, spec: &StageSpec) -> usize {
    match (stage, &spec.methods, &spec.ablations) {
        (Stage::Ablations, _, listed) => {
            1 + listed.as_ref().map_or(config.ablations.len(), Vec::len)
        }
        (_, Some(methods), _) => methods.len(),
        (Stage::Implementation, None, _) => 1,
        (_, None, _) => config.methods.len(),
    }
}

/// How many points a stage's sweep has (the product of its lists' lengths); `None`
/// past `u64::MAX`.
pub fn sweep_point_count(spec: &StageSpec) -> Option<u64> {
    spec.sweep.values().try_fold(1u64, |points, values| {
        points.checked_mul(values.len() as u64)
    })
}

/// How many jobs a stage expands to; `None` past `u64::MAX`.
pub fn stage_job_count(config: &ExperimentConfig, stage: Stage, spec: &StageSpec) -> Option<u64> {
    sweep_point_count(spec)?
        .checked_mul(stage_variant_count(config, stage, spec) as u64)?
        .checked_mul(u64::from(spec.seeds))
}

/// A value's size as the config limits measure it: [`VALUE_COST`] per value (a
/// mapping's keys included), plus each string's length.
pub fn value_bytes(value: &Value) -> u64 {
    VALUE_COST
        + match value {
            Value::String(text) => text.len() as u64,
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(map) => map
                .iter()
                .map(|(key, value)| VALUE_COST + key.len() as u64 + value_bytes(value))
                .sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

fn layer_bytes(overrides: &Overrides) -> u64 {
    overrides
        .iter()
        .map(|(path, value)| VALUE_COST + path.len() as u64 + value_bytes(value))
        .sum()
}

/// An upper bound of one resolved job's size: overrides only replace what they name,
/// so a resolved job is at most the template plus every layer applied to it (the
/// proposed method's, under an ablation's; the largest variant's; the stage's; the
/// largest value of each sweep path).
pub fn resolved_job_bytes(loaded: &LoadedConfig, spec: &StageSpec) -> u64 {
    let config = &loaded.config;
    let proposed = config
        .methods
        .get(config.proposed_method())
        .map_or(0, layer_bytes);
    let largest_variant = config
        .methods
        .values()
        .chain(config.ablations.values())
        .map(layer_bytes)
        .max()
        .unwrap_or(0);
    let largest_sweep_values: u64 = spec
        .sweep
        .values()
        .map(|values| values.iter().map(value_bytes).max().unwrap_or(0))
        .sum();
    let job = &config.job;
    let strings = |texts: &mut dyn Iterator<Item = &String>| -> u64 {
        texts.map(|text| VALUE_COST + text.len() as u64).sum()
    };
    let template = [&job.trainer, &job.params]
        .into_iter()
        .flatten()
        .map(value_bytes)
        .sum::<u64>()
        + strings(&mut job.command.iter().flatten())
        + strings(&mut job.env.iter().flat_map(|(key, value)| [key, value]));
    template + proposed + largest_variant + layer_bytes(&spec.overrides) + largest_sweep_values
}

/// `1 variant`, `2 variants`.
fn counted(count: impl std::fmt::Display + PartialEq<u64>, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {noun}{plural}")
}

/// Refuses a stage past `limits.jobs_per_stage` or `limits.stage_bytes`.
pub(crate) fn check_job_matrix(
    loaded: &LoadedConfig,
    stage: Stage,
    spec: &StageSpec,
) -> Result<(), ConfigError> {
    let config = &loaded.config;
    let limits = &config.limits;
    let variants = stage_variant_count(config, stage, spec) as u64;
    let points = sweep_point_count(spec);
    let past_u64 = || format!("more than {}", u64::MAX);
    let shown = |count: Option<u64>| count.map_or_else(past_u64, |count| count.to_string());
    let jobs = stage_job_count(config, stage, spec);
    if jobs.is_none_or(|jobs| jobs > limits.jobs_per_stage) {
        return Err(loaded.error_at(
            &["stages", stage.as_str()],
            format!(
                "stage `{stage}` expands to {} jobs ({} × {} sweep points × {}), more than \
                 the limit of {} (limits.jobs_per_stage)",
                shown(jobs),
                counted(variants, "variant"),
                shown(points),
                counted(u64::from(spec.seeds), "seed"),
                limits.jobs_per_stage
            ),
            &format!(
                "run fewer seeds, methods or sweep values (the coordinator holds about \
                 1.5 KB per queued job); {}",
                how_to_raise("jobs_per_stage")
            ),
        ));
    }
    let per_job = resolved_job_bytes(loaded, spec);
    let bytes = points
        .and_then(|points| points.checked_mul(variants))
        .and_then(|copies| copies.checked_mul(per_job));
    if bytes.is_none_or(|bytes| bytes > limits.stage_bytes) {
        return Err(loaded.error_at(
            &["stages", stage.as_str()],
            format!(
                "stage `{stage}`'s resolved jobs take up to {} bytes ({} × {} sweep points, \
                 each holding a job of up to {per_job} bytes), more than the limit of {} \
                 (limits.stage_bytes)",
                shown(bytes),
                counted(variants, "variant"),
                shown(points),
                limits.stage_bytes
            ),
            &format!(
                "each variant and sweep point holds its own resolved copy of `job` (its \
                 seeds share it): move long lists out of `job` into a file the job reads, \
                 or sweep fewer points; {}",
                how_to_raise("stage_bytes")
            ),
        ));
    }
    Ok(())
}
