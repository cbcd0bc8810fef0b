//! Stage expansion: a stage of the config becomes a list of jobs.
//!
//! Stages 1–3 run methods × sweep points × seeds; stage 4 runs ablations × seeds plus
//! the proposed method itself as the reference. A job's id depends only on (stage,
//! variant, sweep point, seed), so it is stable across submissions; its fingerprint
//! also covers what it runs (the resolved job and the code's digest), so a changed
//! config or runfile reruns exactly the jobs it affects.

use crate::config::{LoadedConfig, Overrides};
use crate::config_error::ConfigError;
use crate::config_validate::stage_spec;
use crate::ids::{JobId, Stage};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a job's variant is, relative to the proposed method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantKind {
    Method,
    Ablation,
    /// The unablated proposed method, run in the ablations stage for comparison.
    Reference,
}

/// One job of a stage, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDefinition {
    pub id: JobId,
    pub stage: Stage,
    /// The method or ablation name.
    pub variant: String,
    pub kind: VariantKind,
    /// Sweep path → value of this job's sweep point (empty without a sweep).
    pub sweep_point: IndexMap<String, Value>,
    pub seed: u64,
    /// The job template with every override applied (trainer/command/env/params).
    pub resolved: Value,
    /// Digest of what the job runs: the resolved job, the seed and the code.
    pub fingerprint: String,
}

impl JobDefinition {
    /// A readable label of the sweep point, e.g. `trainer.optimizer.lr=0.001`.
    pub fn sweep_label(&self) -> String {
        sweep_label(&self.sweep_point)
    }
}

/// A readable label of a sweep point (`base` without a sweep).
pub fn sweep_label(point: &IndexMap<String, Value>) -> String {
    if point.is_empty() {
        return "base".to_owned();
    }
    point
        .iter()
        .map(|(path, value)| format!("{path}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Which stage to expand, and the digest of the experiment's code files.
#[derive(Debug, Clone, Copy)]
pub struct StageRequest<'a> {
    pub stage: Stage,
    pub code_digest: &'a str,
}

/// Expands one stage of a validated config into its jobs, in a stable order.
///
/// A stage missing from the config is an error with a hint, not an empty list.
pub fn expand_stage(loaded: &LoadedConfig, request: StageRequest<'_>) -> Result<Vec<JobDefinition>, ConfigError> {
    let stage = request.stage;
    let config = &loaded.config;
    let spec = stage_spec(loaded, stage).ok_or_else(|| {
        loaded.error_at(
            &["stages"],
            format!("the config defines no `{stage}` stage"),
            &format!("add `{stage}: {{seeds: 3}}` under `stages`"),
        )
    })?;
    let proposed = config.proposed_method().to_owned();
    let empty = Overrides::new();
    let proposed_overrides = config.methods.get(&proposed).unwrap_or(&empty);

    // (variant name, kind, override layers before the stage's own).
    let mut variants: Vec<(String, VariantKind, Vec<&Overrides>)> = Vec::new();
    if stage == Stage::Ablations {
        variants.push((proposed.clone(), VariantKind::Reference, vec![proposed_overrides]));
        let names: Vec<String> = spec
            .ablations
            .clone()
            .unwrap_or_else(|| config.ablations.keys().cloned().collect());
        for name in names {
            let overrides = config.ablations.get(&name).unwrap_or(&empty);
            variants.push((name, VariantKind::Ablation, vec![proposed_overrides, overrides]));
        }
    } else {
        let names: Vec<String> = match (&spec.methods, stage) {
            (Some(methods), _) => methods.clone(),
            (None, Stage::Implementation) => vec![proposed.clone()],
            (None, _) => config.methods.keys().cloned().collect(),
        };
        for name in names {
            let overrides = config.methods.get(&name).unwrap_or(&empty);
            variants.push((name, VariantKind::Method, vec![overrides]));
        }
    }

    let points = sweep_points(&spec.sweep);
    let mut jobs = Vec::new();
    for (variant, kind, layers) in &variants {
        for point in &points {
            let point_overrides: Overrides = point.clone();
            let mut all_layers = layers.clone();
            all_layers.push(&spec.overrides);
            all_layers.push(&point_overrides);
            let resolved = loaded.resolve(&all_layers).map_err(|err| {
                loaded.error_at(
                    &["stages", stage.as_str()],
                    format!("override `{}`: {}", err.path, err.reason),
                    "an override path must name a key of `job`",
                )
            })?;
            for offset in 0..u64::from(spec.seeds) {
                let seed = spec.seed_base + offset;
                jobs.push(job_definition(stage, variant, *kind, point, seed, resolved.clone(), request.code_digest));
            }
        }
    }
    Ok(jobs)
}

fn job_definition(
    stage: Stage,
    variant: &str,
    kind: VariantKind,
    point: &IndexMap<String, Value>,
    seed: u64,
    resolved: Value,
    code_digest: &str,
) -> JobDefinition {
    let seed_part = format!("s{seed}");
    let id = if point.is_empty() {
        JobId::from_parts(&[stage.as_str(), variant, &seed_part])
    } else {
        let point_digest = short_digest(&[sweep_label(point).as_bytes()]);
        JobId::from_parts(&[stage.as_str(), variant, &point_digest[..8], &seed_part])
    };
    let resolved_text = resolved.to_string();
    let fingerprint = short_digest(&[resolved_text.as_bytes(), &seed.to_le_bytes(), code_digest.as_bytes()]);
    JobDefinition {
        id,
        stage,
        variant: variant.to_owned(),
        kind,
        sweep_point: point.clone(),
        seed,
        resolved,
        fingerprint,
    }
}

/// The cartesian product of the sweep lists, in config order (one empty point
/// without a sweep).
pub fn sweep_points(sweep: &IndexMap<String, Vec<Value>>) -> Vec<IndexMap<String, Value>> {
    let mut points = vec![IndexMap::new()];
    for (path, values) in sweep {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for point in &points {
            for value in values {
                let mut extended = point.clone();
                extended.insert(path.clone(), value.clone());
                next.push(extended);
            }
        }
        points = next;
    }
    points
}

/// First 16 hex digits of the SHA-256 of the parts (length-prefixed, so the split
/// between parts matters).
pub fn short_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..8])
}
