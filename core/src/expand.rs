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
use crate::job_matrix::check_job_matrix;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

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
    /// Shared by the seeds of one variant and sweep point (a 100,000-job stage would
    /// otherwise hold 100,000 copies).
    pub resolved: Arc<Value>,
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
pub fn expand_stage(
    loaded: &LoadedConfig,
    request: StageRequest<'_>,
) -> Result<Vec<JobDefinition>, ConfigError> {
    let stage = request.stage;
    let config = &loaded.config;
    let spec = stage_spec(loaded, stage).ok_or_else(|| {
        loaded.error_at(
            &["stages"],
            format!("the config defines no `{stage}` stage"),
            &format!("add `{stage}: {{seeds: 3}}` under `stages`"),
        )
    })?;
    // The config was validated, but this is where the memory is spent: the matrix is
    // checked here too, before the sweep's points or the jobs are allocated.
    check_job_matrix(loaded, stage, spec)?;
    let proposed = config.proposed_method().to_owned();
    let empty = Overrides::new();
    let proposed_overrides = config.methods.get(&proposed).unwrap_or(&empty);

    // (variant name, kind, override layers before the stage's own).
    let mut variants: Vec<(String, VariantKind, Vec<&Overrides>)> = Vec::new();
    if stage == Stage::Ablations {
        variants.push((
            proposed.clone(),
            VariantKind::Reference,
            vec![proposed_overrides],
        ));
        let names: Vec<String> = spec
            .ablations
            .clone()
            .unwrap_or_else(|| config.ablations.keys().cloned().collect());
        for name in names {
            let overrides = config.ablations.get(&name).unwrap_or(&empty);
            variants.push((
                name,
                VariantKind::Ablation,
                vec![proposed_overrides, overrides],
            ));
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
    // Exactly sized: a vector grown by doubling to 100,000 definitions holds up to
    // twice their size, a transient peak the process's RSS keeps.
    let mut jobs = Vec::with_capacity(variants.len() * points.len() * spec.seeds as usize);
    for (variant, kind, layers) in &variants {
        for point in &points {
            let point_overrides: Overrides = point.clone();
            let mut all_layers = layers.clone();
            all_layers.push(&spec.overrides);
            all_layers.push(&point_overrides);
            let resolved = Arc::new(loaded.resolve(&all_layers).map_err(|err| {
                loaded.error_at(
                    &["stages", stage.as_str()],
                    format!("override `{}`: {}", err.path, err.reason),
                    "an override path must name a key of `job`",
                )
            })?);
            for offset in 0..u64::from(spec.seeds) {
                let seed = spec.seed_base + offset;
                jobs.push(job_definition(
                    stage,
                    variant,
                    *kind,
                    point,
                    seed,
                    resolved.clone(),
                    request.code_digest,
                ));
            }
        }
    }
    // Validation rejects repeated methods and sweep values, so ids are unique; this
    // guards the invariant the coordinator's maps rely on.
    let mut seen = std::collections::HashSet::with_capacity(jobs.len());
    if let Some(duplicate) = jobs.iter().find(|job| !seen.insert(&job.id)) {
        return Err(loaded.error_at(
            &["stages", stage.as_str()],
            format!(
                "stage `{stage}` expands to the job `{}` twice",
                duplicate.id
            ),
            "remove the repeated method, ablation or sweep value",
        ));
    }
    Ok(jobs)
}

fn job_definition(
    stage: Stage,
    variant: &str,
    kind: VariantKind,
    point: &IndexMap<String, Value>,
    seed: u64,
    resolved: Arc<Value>,
    code_digest: &str,
) -> JobDefinition {
    let seed_part = format!("s{seed}");
    let id = if point.is_empty() {
        JobId::from_parts(&[stage.as_str(), variant, &seed_part])
    } else {
        // Sorted by path, so reordering the sweep's keys in the config keeps the ids.
        let mut sorted: Vec<(&String, &Value)> = point.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let canonical: Vec<String> = sorted
            .iter()
            .map(|(path, value)| format!("{path}={}", canonical_json(value)))
            .collect();
        let point_digest = short_digest(&[canonical.join(",").as_bytes()]);
        JobId::from_parts(&[stage.as_str(), variant, &point_digest[..12], &seed_part])
    };
    let fingerprint = fingerprint(&resolved, seed, code_digest);
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

/// A job's fingerprint: what it runs. Keys are sorted first, so writing the same
/// config in another order is the same job; any other change to the resolved job, the
/// seed or the code is a new fingerprint.
pub fn fingerprint(resolved: &Value, seed: u64, code_digest: &str) -> String {
    short_digest(&[
        canonical_json(resolved).as_bytes(),
        &seed.to_le_bytes(),
        code_digest.as_bytes(),
    ])
}

/// What a variant at a sweep point runs, whatever the stage and the seed: the resolved
/// job and the code. Two stages whose groups share it ran the same experiment, so
/// their seeds are evidence about the same thing (and a seed run in both is one
/// computation, run twice).
pub fn configuration_fingerprint(resolved: &Value, code_digest: &str) -> String {
    short_digest(&[canonical_json(resolved).as_bytes(), code_digest.as_bytes()])
}

/// JSON text with every object's keys sorted (numbers and strings as serde_json
/// writes them).
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::String(key.clone()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    /// A random experiment: methods and ablations as overrides of `params`, and per
    /// stage a seed count and a sweep.
    #[derive(Debug, Clone)]
    struct Shape {
        methods: Vec<i64>,
        ablations: Vec<i64>,
        seeds: [u32; 4],
        sweep_lr: Vec<i64>,
        sweep_hidden: Vec<i64>,
        seed_base: u64,
    }

    fn shapes() -> impl Strategy<Value = Shape> {
        (
            proptest::collection::vec(0i64..100, 1..4),
            proptest::collection::vec(0i64..100, 0..4),
            [1u32..4, 1u32..4, 1u32..4, 1u32..4],
            proptest::collection::hash_set(1i64..50, 0..3),
            proptest::collection::hash_set(1i64..50, 0..3),
            0u64..1_000_000,
        )
            .prop_map(|(methods, ablations, seeds, lr, hidden, seed_base)| Shape {
                methods,
                ablations,
                seeds,
                sweep_lr: lr.into_iter().collect(),
                sweep_hidden: hidden.into_iter().collect(),
                seed_base,
            })
    }

    /// The config as JSON (YAML is a superset); `reverse` writes every map in the
    /// opposite order, which must change nothing about the jobs.
    fn config_text(shape: &Shape, reverse: bool) -> String {
        let order = |mut pairs: Vec<(String, serde_json::Value)>| {
            if reverse {
                pairs.reverse();
            }
            serde_json::Value::Object(pairs.into_iter().collect())
        };
        let methods = order(
            shape
                .methods
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("m{i}"), json!({"params.hidden": v})))
                .collect(),
        );
        let ablations = order(
            shape
                .ablations
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("a{i}"), json!({"params.depth": v})))
                .collect(),
        );
        let mut sweep = Vec::new();
        if !shape.sweep_lr.is_empty() {
            sweep.push(("params.lr".to_owned(), json!(shape.sweep_lr)));
        }
        if !shape.sweep_hidden.is_empty() {
            sweep.push(("params.hidden".to_owned(), json!(shape.sweep_hidden)));
        }
        let sweep = order(sweep);
        let stage =
            |seeds: u32| json!({"seeds": seeds, "seed_base": shape.seed_base, "sweep": sweep});
        let mut stages = vec![
            ("implementation".to_owned(), stage(shape.seeds[0])),
            ("baselines".to_owned(), stage(shape.seeds[1])),
            ("full".to_owned(), stage(shape.seeds[2])),
        ];
        if !shape.ablations.is_empty() {
            stages.push(("ablations".to_owned(), stage(shape.seeds[3])));
        }
        let params = order(vec![
            ("lr".into(), json!(1)),
            ("hidden".into(), json!(8)),
            ("depth".into(), json!(2)),
        ]);
        let config = order(vec![
            ("name".into(), json!("prop")),
            (
                "primary_metric".into(),
                json!({"name": "acc", "goal": "max"}),
            ),
            (
                "job".into(),
                json!({"command": ["python", "runfile.py"], "params": params}),
            ),
            ("methods".into(), methods),
            ("proposed".into(), json!("m0")),
            ("ablations".into(), ablations),
            ("stages".into(), order(stages)),
        ]);
        serde_json::to_string_pretty(&config).expect("json")
    }

    fn expand_all(text: &str, code: &str) -> Vec<JobDefinition> {
        let loaded = ExperimentConfig::parse(text, Path::new("config.yaml"))
            .expect("generated config is valid");
        Stage::ALL
            .into_iter()
            .filter(|stage| crate::config_validate::stage_spec(&loaded, *stage).is_some())
            .flat_map(|stage| {
                expand_stage(
                    &loaded,
                    StageRequest {
                        stage,
                        code_digest: code,
                    },
                )
                .expect("expands")
            })
            .collect()
    }

    fn by_id(jobs: &[JobDefinition]) -> HashMap<String, String> {
        jobs.iter()
            .map(|job| (job.id.to_string(), job.fingerprint.clone()))
            .collect()
    }

    proptest! {
        #[test]
        fn counts_follow_the_stage_shape(shape in shapes()) {
            let jobs = expand_all(&config_text(&shape, false), "code");
            let points = shape.sweep_lr.len().max(1) * shape.sweep_hidden.len().max(1);
            let count = |stage: Stage| jobs.iter().filter(|job| job.stage == stage).count();
            let seeds = |i: usize| shape.seeds[i] as usize;
            // Stage 1 runs the proposed method only by default.
            prop_assert_eq!(count(Stage::Implementation), points * seeds(0));
            prop_assert_eq!(count(Stage::Baselines), shape.methods.len() * points * seeds(1));
            prop_assert_eq!(count(Stage::Full), shape.methods.len() * points * seeds(2));
            let ablation_jobs = if shape.ablations.is_empty() { 0 } else { (shape.ablations.len() + 1) * points * seeds(3) };
            prop_assert_eq!(count(Stage::Ablations), ablation_jobs);
            let references = jobs.iter().filter(|job| job.kind == VariantKind::Reference).count();
            prop_assert_eq!(references, if shape.ablations.is_empty() { 0 } else { points * seeds(3) });
        }

        #[test]
        fn ids_are_unique_safe_file_names(shape in shapes()) {
            let jobs = expand_all(&config_text(&shape, false), "code");
            let mut seen = HashSet::new();
            for job in &jobs {
                prop_assert!(seen.insert(job.id.clone()), "duplicate id {}", job.id);
                prop_assert!(crate::ids::is_safe_name(job.id.as_str()), "unsafe id {}", job.id);
                prop_assert!(JobId::parse(job.id.as_str()).is_ok());
                prop_assert!(!job.id.as_str().contains('/') && job.id.as_str().len() <= 128);
            }
        }

        #[test]
        fn ids_and_fingerprints_are_stable_across_runs_and_reordering(shape in shapes()) {
            let first = expand_all(&config_text(&shape, false), "code");
            let again = expand_all(&config_text(&shape, false), "code");
            prop_assert_eq!(&first, &again);
            let reordered = expand_all(&config_text(&shape, true), "code");
            prop_assert_eq!(by_id(&first), by_id(&reordered));
        }

        #[test]
        fn fingerprints_change_exactly_with_the_resolved_job_seed_or_code(shape in shapes(), changed in 0usize..4) {
            let jobs = expand_all(&config_text(&shape, false), "code");
            // Equal fingerprints if and only if equal (resolved job, seed).
            let mut owner: HashMap<&str, (String, u64)> = HashMap::new();
            let mut fingerprint_of: HashMap<(String, u64), &str> = HashMap::new();
            for job in &jobs {
                let what = (canonical_json(&job.resolved), job.seed);
                if let Some(previous) = owner.insert(&job.fingerprint, what.clone()) {
                    prop_assert_eq!(&previous, &what);
                }
                if let Some(previous) = fingerprint_of.insert(what, &job.fingerprint) {
                    prop_assert_eq!(previous, job.fingerprint.as_str());
                }
            }
            // New code: every fingerprint changes, no id does.
            let new_code = by_id(&expand_all(&config_text(&shape, false), "code v2"));
            let old = by_id(&jobs);
            prop_assert_eq!(old.keys().collect::<HashSet<_>>(), new_code.keys().collect::<HashSet<_>>());
            prop_assert!(old.iter().all(|(id, fp)| new_code[id] != *fp));
            // One method's override changed: exactly the jobs whose resolved job changed.
            let mut edited = shape.clone();
            let index = changed % shape.methods.len();
            edited.methods[index] += 1000;
            let after = expand_all(&config_text(&edited, false), "code");
            let resolved_before: HashMap<String, String> = jobs.iter().map(|j| (j.id.to_string(), canonical_json(&j.resolved))).collect();
            for job in &after {
                let id = job.id.to_string();
                let same_job = resolved_before[&id] == canonical_json(&job.resolved);
                prop_assert_eq!(same_job, old[&id] == job.fingerprint, "job {}", id);
                let touches_edited = job.variant == format!("m{index}") || (index == 0 && job.kind != VariantKind::Method);
                // A sweep over params.hidden hides the method's own value.
                if shape.sweep_hidden.is_empty() {
                    prop_assert_eq!(touches_edited, !same_job, "job {}", id);
                }
            }
        }
    }

    #[test]
    fn a_stage_the_config_lacks_is_an_error_with_a_hint() {
        let text = "name: x\nprimary_metric: {name: acc, goal: max}\njob: {command: [python, runfile.py]}\nmethods: {proposed: {}}\nstages: {implementation: {seeds: 1}}\n";
        let loaded = ExperimentConfig::parse(text, Path::new("config.yaml")).expect("valid");
        let err = expand_stage(
            &loaded,
            StageRequest {
                stage: Stage::Full,
                code_digest: "c",
            },
        )
        .expect_err("no full stage");
        assert!(err.to_string().contains("defines no `full` stage"), "{err}");
        assert!(err.hint.contains("full: {seeds: 3}"));
    }
}
