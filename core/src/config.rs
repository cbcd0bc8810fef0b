//! The experiment definition, `experiments/<idea>/config.yaml` (DESIGN §2).
//!
//! Parsing is two passes: serde with `deny_unknown_fields` for shape and types (serde
//! reports the line and column), then [`ExperimentConfig::validate`] for what serde
//! cannot see (names the stages use, override paths, claims, bounds). Every error is a
//! [`ConfigError`] with a position and a hint; nothing runs until both passes succeed.
//! Before both, the text is held to its [`Limits`] (size, strings, lists, nesting,
//! aliases), so that neither pass can be made to exhaust memory.

use crate::config_error::{locate_key, ConfigError};
use crate::config_limits::{read_config_text, Limits};
use crate::config_locate::{locate, At};
use crate::ids::is_safe_name;
use crate::overrides::apply_override;
use crate::trainer_spec::TrainerSpec;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most seeds of one stage (a typo guard; the job matrix has its own limit).
pub const MAX_SEEDS: u32 = 1000;

/// Dotted path → value.
pub type Overrides = IndexMap<String, Value>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub primary_metric: PrimaryMetric,
    /// Metrics a command job prints, declared so claims can be checked before a run.
    #[serde(default)]
    pub metrics: Vec<String>,
    pub job: JobTemplate,
    /// The proposed method and its baselines, as overrides of `job`.
    pub methods: IndexMap<String, Overrides>,
    /// Which method is the proposed one (default: `proposed`, else the first listed).
    #[serde(default)]
    pub proposed: Option<String>,
    /// Overrides of the proposed method, one per ablation.
    #[serde(default)]
    pub ablations: IndexMap<String, Overrides>,
    pub stages: Stages,
    #[serde(default)]
    pub claims: Vec<Claim>,
    #[serde(default)]
    pub resources: Resources,
    /// Raised limits on the config and its job matrix (docs/config.md, "Limits").
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryMetric {
    pub name: String,
    pub goal: Goal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Max,
    Min,
}

/// What one job runs: the built-in trainer or a command. Kept as JSON after
/// validation so overrides can address any field by path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Free-form parameters passed to command jobs in EXP_CONFIG (overridable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    #[serde(default)]
    pub implementation: Option<StageSpec>,
    #[serde(default)]
    pub baselines: Option<StageSpec>,
    #[serde(default)]
    pub full: Option<StageSpec>,
    #[serde(default)]
    pub ablations: Option<StageSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Methods to run (stages 1–3); default: all methods (stage 1: the proposed one).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Ablations to run (stage 4); default: all.
    #[serde(default)]
    pub ablations: Option<Vec<String>>,
    pub seeds: u32,
    /// First seed; seeds are `seed_base..seed_base + seeds`.
    #[serde(default)]
    pub seed_base: u64,
    #[serde(default)]
    pub overrides: Overrides,
    /// Path → values; the stage runs the cartesian product of all lists.
    #[serde(default)]
    pub sweep: IndexMap<String, Vec<Value>>,
    /// A second look at the claims on more seeds, declared before the first
    /// (docs/statistics.md, "Adding seeds without fishing").
    #[serde(default)]
    pub sequential: Option<SequentialSpec>,
}

/// A two-look group-sequential design: the stage's claims are judged after `seeds`
/// (look 1) and, if `expcluster submit --seeds-for-power` asks, once more after
/// `max_seeds` (look 2, the last), each look at the nominal level of `boundary`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialSpec {
    /// The seeds of the second and last look.
    pub max_seeds: u32,
    #[serde(default)]
    pub boundary: SequentialBoundary,
}

/// The shape of a two-look design's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequentialBoundary {
    /// A strict first look; nearly the whole alpha at the second (the default).
    #[default]
    ObrienFleming,
    /// The same nominal level at both looks.
    Pocock,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub id: String,
    /// The method expected to be better…
    pub better: String,
    /// …than this one…
    pub than: String,
    /// …on this metric (its goal is the primary metric's when it is the primary one).
    pub metric: String,
    /// Significance level for "supported" and "contradicted" (default 0.05).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub statement: Option<String>,
    /// The test, fixed before the data (docs/statistics.md).
    #[serde(default)]
    pub test: ClaimTest,
}

fn default_alpha() -> f64 {
    0.05
}

/// Which test a claim's comparison runs. `auto` decides by the design alone: the
/// paired t-test when both sides ran the same seeds, Welch's otherwise; the others
/// ask for one test whatever the data (a paired test needs shared seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimTest {
    #[default]
    Auto,
    PairedT,
    Welch,
    MannWhitney,
}

impl ClaimTest {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimTest::Auto => "auto",
            ClaimTest::PairedT => "paired_t",
            ClaimTest::Welch => "welch",
            ClaimTest::MannWhitney => "mann_whitney",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_one")]
    pub gpus_per_job: u32,
    #[serde(default = "default_one")]
    pub data_parallel: u32,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wall-clock limit per attempt, e.g. `30m`, `1h`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_one() -> u32 {
    1
}
fn default_max_attempts() -> u32 {
    3
}
fn default_timeout() -> String {
    "1h".to_owned()
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            gpus_per_job: 1,
            data_parallel: 1,
            max_attempts: default_max_attempts(),
            timeout: default_timeout(),
        }
    }
}

impl Resources {
    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(&self.timeout).unwrap_or(Duration::from_secs(3600))
    }
}

/// A parsed and validated config, with the text it came from (for error positions).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: ExperimentConfig,
    pub path: PathBuf,
    pub text: String,
}

impl ExperimentConfig {
    /// Reads (never more than [`crate::config_limits::READ_CEILING`] bytes), parses and
    /// validates a config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        Self::parse(&read_config_text(path)?, path)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
        Limits::of_text(text, path)?.check_text(text, path)?;
        let config: ExperimentConfig = serde_yaml::from_str(text).map_err(|err| {
            let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                message: err
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                hint: hint_for_serde_error(&err.to_string()),
            }
        })?;
        let loaded = LoadedConfig {
            config,
            path: path.to_owned(),
            text: text.to_owned(),
        };
        crate::config_validate::validate(&loaded)?;
        Ok(loaded)
    }

    /// The proposed method's name.
    pub fn proposed_method(&self) -> &str {
        if let Some(name) = &self.proposed {
            return name;
        }
        if self.methods.contains_key("proposed") {
            return "proposed";
        }
        self.methods
            .keys()
            .next()
            .map_or("proposed", String::as_str)
    }

    /// The goal of a metric: the primary metric's goal, or inferred from its name.
    pub fn goal_of(&self, metric: &str) -> Goal {
        if metric == self.primary_metric.name {
            return self.primary_metric.goal;
        }
        let lower = metric.to_ascii_lowercase();
        let minimised = ["loss", "error", "mse", "mae", "rmse", "perplexity", "time"];
        if minimised.iter().any(|word| lower.contains(word)) {
            Goal::Min
        } else {
            Goal::Max
        }
    }

    /// The metric names jobs are known to produce (for claim checks).
    pub fn known_metrics(&self) -> Vec<String> {
        let mut names = self.metrics.clone();
        if let Some(trainer) = &self.job.trainer {
            if let Ok(spec) = TrainerSpec::from_json(trainer) {
                names.extend(spec.metric_names());
            }
        }
        names.push(self.primary_metric.name.clone());
        names.sort();
        names.dedup();
        names
    }
}

impl LoadedConfig {
    /// This config with `stage` run on `seeds` seeds instead of its `seeds` (the
    /// second look of a stage's `sequential` design); unchanged when the stage is not
    /// defined.
    pub fn with_stage_seeds(&self, stage: crate::ids::Stage, seeds: u32) -> LoadedConfig {
        let mut changed = self.clone();
        if let Some(spec) = changed.config.stages.get_mut(stage) {
            spec.seeds = seeds;
        }
        changed
    }

    /// A [`ConfigError`] positioned at a key path of this file.
    pub fn error_at(&self, path: &[&str], message: String, hint: &str) -> ConfigError {
        let (line, column) = locate_key(&self.text, path);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message,
            hint: hint.to_owned(),
        }
    }

    /// A [`ConfigError`] positioned at a path of keys, items and values of this file.
    pub fn error_at_path(&self, path: &[At<'_>], message: String, hint: &str) -> ConfigError {
        let (line, column) = locate(&self.text, path);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message,
            hint: hint.to_owned(),
        }
    }

    /// The job template as JSON, ready for overrides.
    pub fn job_json(&self) -> Value {
        serde_json::to_value(&self.config.job).unwrap_or(Value::Null)
    }

    /// The job template with the given overrides applied, in order.
    pub fn resolve(&self, layers: &[&Overrides]) -> Result<Value, crate::overrides::OverrideError> {
        let mut job = self.job_json();
        for layer in layers {
            for (path, value) in layer.iter() {
                apply_override(&mut job, path, value)?;
            }
        }
        Ok(job)
    }
}

fn hint_for_serde_error(message: &str) -> String {
    if message.contains("unknown field") {
        "remove or rename the key; `expcluster init` writes a config.yaml that shows every option"
            .to_owned()
    } else if message.contains("missing field") {
        "add the missing key; see the commented config.yaml that `expcluster init` writes"
            .to_owned()
    } else if message.contains("invalid type") || message.contains("unknown variant") {
        "check the value's type against the commented config.yaml from `expcluster init`".to_owned()
    } else {
        "check the YAML syntax near this position (indentation, colons, brackets)".to_owned()
    }
}

/// Whether the config defines a stage (`submit --stage all` runs those, in order).
pub fn stage_is_defined(config: &ExperimentConfig, stage: crate::ids::Stage) -> bool {
    config.stages.get(stage).is_some()
}

impl Stages {
    /// The spec of one stage, for changing it (a second look's seeds).
    pub fn get_mut(&mut self, stage: crate::ids::Stage) -> Option<&mut StageSpec> {
        use crate::ids::Stage;
        match stage {
            Stage::Implementation => self.implementation.as_mut(),
            Stage::Baselines => self.baselines.as_mut(),
            Stage::Full => self.full.as_mut(),
            Stage::Ablations => self.ablations.as_mut(),
        }
    }

    /// The spec of one stage, when the config defines it.
    pub fn get(&self, stage: crate::ids::Stage) -> Option<&StageSpec> {
        use crate::ids::Stage;
        match stage {
            Stage::Implementation => self.implementation.as_ref(),
            Stage::Baselines => self.baselines.as_ref(),
            Stage::Full => self.full.as_ref(),
            Stage::Ablations => self.ablations.as_ref(),
        }
    }
}

/// True when a method, ablation or claim name can be used in ids and file names.
pub fn is_valid_variant_name(name: &str) -> bool {
    is_safe_name(name) && !name.contains('.') && name.len() <= 64
}
