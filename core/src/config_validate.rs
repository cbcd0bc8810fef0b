//! The second pass over a parsed config: everything serde cannot check.
//!
//! Each check names the key it is about, so the error carries that key's position.

use crate::config::{is_valid_variant_name, LoadedConfig, StageSpec, MAX_SEEDS};
use crate::config_error::ConfigError;
use crate::config_locate::At;
use crate::expand::canonical_json;
use crate::ids::Stage;
use crate::job_matrix::check_job_matrix;
use crate::metric_line::is_metric_name;
use crate::trainer_spec::TrainerSpec;

pub(crate) fn validate(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    validate_names(loaded)?;
    validate_job(loaded)?;
    validate_variants(loaded)?;
    validate_stages(loaded)?;
    validate_claims(loaded)?;
    validate_resources(loaded)
}

fn validate_names(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let config = &loaded.config;
    if config.name.trim().is_empty() {
        return Err(loaded.error_at(
            &["name"],
            "`name` is empty".into(),
            "give the experiment a name",
        ));
    }
    if !is_metric_name(&config.primary_metric.name) {
        return Err(loaded.error_at(
            &["primary_metric", "name"],
            format!("`{}` is not a metric name", config.primary_metric.name),
            "metric names are identifiers such as test_accuracy",
        ));
    }
    if config.methods.is_empty() {
        return Err(loaded.error_at(
            &["methods"],
            "no methods are defined".into(),
            "add at least `proposed: {}` under `methods`",
        ));
    }
    let named = config.methods.keys().map(|name| ("methods", name));
    for (section, name) in named.chain(config.ablations.keys().map(|name| ("ablations", name))) {
        if !is_valid_variant_name(name) {
            return Err(loaded.error_at_path(
                &[At::Key(section), At::Key(name)],
                format!("`{name}` cannot be used as a method or ablation name"),
                "use letters, digits, `_` and `-` (up to 64 characters)",
            ));
        }
    }
    for name in config.ablations.keys() {
        if config.methods.contains_key(name) {
            return Err(loaded.error_at(
                &["ablations", name],
                format!("`{name}` is both a method and an ablation"),
                "rename the ablation (for example `no_<component>`)",
            ));
        }
    }
    if let Some(proposed) = &config.proposed {
        if !config.methods.contains_key(proposed) {
            return Err(loaded.error_at_path(
                &[At::Key("proposed"), At::ValueOfKey],
                format!("the proposed method `{proposed}` is not under `methods`"),
                &format!("known methods: {}", join(config.methods.keys())),
            ));
        }
    }
    Ok(())
}

fn validate_job(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let job = &loaded.config.job;
    match (&job.trainer, &job.command) {
        (Some(_), Some(_)) => Err(loaded.error_at(
            &["job", "command"],
            "`job` has both `trainer` and `command`".into(),
            "a job runs either the built-in trainer or a command: keep one",
        )),
        (None, None) => Err(loaded.error_at(
            &["job"],
            "`job` has neither `trainer` nor `command`".into(),
            "add `command: [python, runfile.py]` or a `trainer:` section",
        )),
        (None, Some(argv)) if argv.is_empty() || argv[0].trim().is_empty() => Err(loaded.error_at(
            &["job", "command"],
            "`job.command` is empty".into(),
            "give the program and its arguments, e.g. [python, runfile.py]",
        )),
        (Some(trainer), None) => TrainerSpec::from_json(trainer)
            .map(|_| ())
            .map_err(|reason| {
                let (section, field) = trainer_error_keys(&reason);
                let path: Vec<&str> = ["job", "trainer"]
                    .into_iter()
                    .chain(section)
                    .chain(field)
                    .collect();
                loaded.error_at(
                    &path,
                    format!("invalid trainer: {reason}"),
                    "see the trainer options in the config.yaml from `expcluster init`",
                )
            }),
        (None, Some(_)) => Ok(()),
    }
}

/// The trainer section and key an error from [`TrainerSpec::from_json`] is about:
/// its messages start with the section (`model: ...` or `` `model`: ... ``) and quote
/// the key in backticks (`` `dropout` must be in [0, 1) ``, `` unknown field `dropot` ``).
fn trainer_error_keys(reason: &str) -> (Option<&str>, Option<&str>) {
    let Some((head, rest)) = reason.split_once(": ") else {
        return (None, None);
    };
    let section = head.trim_matches('`');
    if section.is_empty() || !section.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return (None, None);
    }
    let field = rest
        .split('`')
        .nth(1)
        .filter(|field| !field.is_empty() && !field.contains(' '));
    (Some(section), field)
}

/// Every method and ablation must resolve: its override paths exist and, for the
/// trainer, the resolved section is itself valid.
fn validate_variants(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let config = &loaded.config;
    for (name, overrides) in &config.methods {
        check_resolves(loaded, &["methods", name], &[overrides])?;
    }
    let proposed = config.methods.get(config.proposed_method());
    for (name, overrides) in &config.ablations {
        let base = proposed.into_iter().collect::<Vec<_>>();
        let mut layers = base.clone();
        layers.push(overrides);
        check_resolves(loaded, &["ablations", name], &layers)?;
    }
    Ok(())
}

fn check_resolves(
    loaded: &LoadedConfig,
    at: &[&str],
    layers: &[&crate::config::Overrides],
) -> Result<(), ConfigError> {
    let resolved = loaded.resolve(layers).map_err(|err| {
        let mut path = at.to_vec();
        path.push(err.path.as_str());
        loaded.error_at(
            &path,
            format!("override `{}`: {}", err.path, err.reason),
            "an override path must name a key of `job` (for example trainer.model.dropout)",
        )
    })?;
    if let Some(trainer) = resolved.get("trainer") {
        TrainerSpec::from_json(trainer).map_err(|reason| {
            loaded.error_at(
                at,
                format!("after overrides, the trainer is invalid: {reason}"),
                "fix the override values",
            )
        })?;
    }
    Ok(())
}

fn validate_stages(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    reject_empty_stages(loaded)?;
    let mut any = false;
    for stage in Stage::ALL {
        let Some(spec) = stage_spec(loaded, stage) else {
            continue;
        };
        any = true;
        validate_stage(loaded, stage, spec)?;
    }
    if !any {
        return Err(loaded.error_at(
            &["stages"],
            "no stages are defined".into(),
            "define at least `implementation: {seeds: 1}` under `stages`",
        ));
    }
    Ok(())
}

/// `baselines:` with nothing after it parses as "no such stage"; the researcher meant
/// a stage, so it is an error rather than a stage that silently never runs.
fn reject_empty_stages(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    /// Only `stages`, and of each stage only whether it is null: everything else is
    /// skipped by serde_yaml without being built (or its aliases followed).
    #[derive(serde::Deserialize)]
    struct StagesOnly {
        #[serde(default)]
        stages: Option<indexmap::IndexMap<String, Option<serde::de::IgnoredAny>>>,
    }
    let Ok(raw) = serde_yaml::from_str::<StagesOnly>(&loaded.text) else {
        return Ok(());
    };
    let stages = raw.stages.unwrap_or_default();
    for stage in Stage::ALL {
        if stages.get(stage.as_str()).is_some_and(Option::is_none) {
            return Err(loaded.error_at(
                &["stages", stage.as_str()],
                format!("stage `{stage}` is empty"),
                "give it at least a number of seeds (`{seeds: 3}`), or remove it",
            ));
        }
    }
    Ok(())
}

pub(crate) fn stage_spec(loaded: &LoadedConfig, stage: Stage) -> Option<&StageSpec> {
    loaded.config.stages.get(stage)
}

fn validate_stage(
    loaded: &LoadedConfig,
    stage: Stage,
    spec: &StageSpec,
) -> Result<(), ConfigError> {
    let config = &loaded.config;
    let name = stage.as_str();
    let key = |key: &'static str| [At::Key("stages"), At::Key(name), At::Key(key)];
    if spec.seeds == 0 || spec.seeds > MAX_SEEDS {
        let [a, b, c] = key("seeds");
        return Err(loaded.error_at_path(
            &[a, b, c, At::ValueOfKey],
            format!("stage `{stage}` has {} seeds", spec.seeds),
            &format!("use between 1 and {MAX_SEEDS} seeds"),
        ));
    }
    if spec.seed_base.checked_add(u64::from(spec.seeds)).is_none() {
        return Err(loaded.error_at_path(
            &key("seed_base"),
            format!("stage `{stage}`: seed_base + seeds overflows"),
            "use a smaller seed_base",
        ));
    }
    if let Some(sequential) = &spec.sequential {
        let [a, b, c] = key("sequential");
        if sequential.max_seeds <= spec.seeds || sequential.max_seeds > MAX_SEEDS {
            return Err(loaded.error_at_path(
                &[a, b, c, At::Key("max_seeds"), At::ValueOfKey],
                format!(
                    "stage `{stage}` declares a second look at {} seeds after a first at {}",
                    sequential.max_seeds, spec.seeds
                ),
                &format!(
                    "max_seeds is the second look's seeds: more than `seeds` ({}) and at most {MAX_SEEDS}",
                    spec.seeds
                ),
            ));
        }
        if spec
            .seed_base
            .checked_add(u64::from(sequential.max_seeds))
            .is_none()
        {
            return Err(loaded.error_at_path(
                &key("seed_base"),
                format!("stage `{stage}`: seed_base + max_seeds overflows"),
                "use a smaller seed_base",
            ));
        }
    }
    // The ablations stage selects ablations; the others select methods.
    let selects_ablations = stage == Stage::Ablations;
    let (listed, other) = if selects_ablations {
        (&spec.ablations, &spec.methods)
    } else {
        (&spec.methods, &spec.ablations)
    };
    let kind = if selects_ablations {
        "ablation"
    } else {
        "method"
    };
    let known: Vec<&String> = if selects_ablations {
        config.ablations.keys().collect()
    } else {
        config.methods.keys().collect()
    };
    if other.is_some() {
        let (field, why) = if stage == Stage::Ablations {
            ("methods", "the ablations stage runs the proposed method and its ablations: list `ablations:` instead")
        } else {
            (
                "ablations",
                "only the ablations stage runs ablations: list `methods:` here",
            )
        };
        return Err(loaded.error_at_path(
            &key(field),
            format!("stage `{stage}` cannot list {field}"),
            why,
        ));
    }
    let field = if stage == Stage::Ablations {
        "ablations"
    } else {
        "methods"
    };
    if let Some(names) = listed {
        if names.is_empty() {
            return Err(loaded.error_at_path(
                &key(field),
                format!("stage `{stage}` lists no {kind}s"),
                &format!("list at least one {kind}, or remove `{field}` to run them all"),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        for item in names {
            let [a, b, c] = key(field);
            let at = [a, b, c, At::Value(item)];
            if !known.contains(&item) {
                return Err(loaded.error_at_path(
                    &at,
                    format!("stage `{stage}` names the unknown {kind} `{item}`"),
                    &format!("known {kind}s: {}", join(known.iter().copied())),
                ));
            }
            if !seen.insert(item) {
                return Err(loaded.error_at_path(
                    &at,
                    format!("stage `{stage}` lists the {kind} `{item}` twice"),
                    "list each once; more runs of it come from `seeds`",
                ));
            }
        }
    }
    if stage == Stage::Ablations && listed.as_ref().map_or(config.ablations.len(), Vec::len) == 0 {
        return Err(loaded.error_at(
            &["stages", "ablations"],
            "the ablations stage has no ablations to run".into(),
            "define ablations under `ablations:` (overrides of the proposed method)",
        ));
    }
    // Before the sweep's values are resolved one by one: a 10^7-job stage is refused
    // from arithmetic alone.
    check_job_matrix(loaded, stage, spec)?;
    for (path, values) in &spec.sweep {
        let at = [
            At::Key("stages"),
            At::Key(name),
            At::Key("sweep"),
            At::Key(path),
        ];
        if values.is_empty() {
            return Err(loaded.error_at_path(
                &at,
                format!("sweep `{path}` has no values"),
                "give at least one value, or remove the path",
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(values.len());
        for value in values {
            if !seen.insert(canonical_json(value)) {
                return Err(loaded.error_at_path(
                    &at,
                    format!("sweep `{path}` lists {value} twice"),
                    "list each value once; repeats come from `seeds`",
                ));
            }
            let mut one = crate::config::Overrides::new();
            one.insert(path.clone(), value.clone());
            check_resolves(loaded, &["stages", name, "sweep"], &[&spec.overrides, &one])?;
        }
    }
    check_resolves(loaded, &["stages", name, "overrides"], &[&spec.overrides])?;
    Ok(())
}

fn validate_claims(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let config = &loaded.config;
    let known = config.known_metrics();
    let mut seen = std::collections::HashSet::new();
    for claim in &config.claims {
        let item = At::Item {
            key: "id",
            value: &claim.id,
        };
        let field = |key: &'static str| [At::Key("claims"), item, At::Key(key), At::ValueOfKey];
        if !is_valid_variant_name(&claim.id) || !seen.insert(claim.id.as_str()) {
            return Err(loaded.error_at_path(
                &field("id"),
                format!("claim id `{}` is invalid or repeated", claim.id),
                "give every claim a unique id of letters, digits, `_` and `-`",
            ));
        }
        for (side, key) in [(&claim.better, "better"), (&claim.than, "than")] {
            if !config.methods.contains_key(side) && !config.ablations.contains_key(side) {
                return Err(loaded.error_at_path(
                    &field(key),
                    format!("claim `{}` compares the unknown method `{side}`", claim.id),
                    &format!(
                        "known methods and ablations: {}",
                        join(config.methods.keys().chain(config.ablations.keys()))
                    ),
                ));
            }
        }
        if claim.better == claim.than {
            return Err(loaded.error_at_path(
                &field("than"),
                format!("claim `{}` compares `{}` with itself", claim.id, claim.than),
                "compare two different methods",
            ));
        }
        if !known.contains(&claim.metric) {
            return Err(loaded.error_at_path(
                &field("metric"),
                format!(
                    "claim `{}` is about `{}`, a metric no job produces",
                    claim.id, claim.metric
                ),
                &format!(
                    "known metrics: {}; command jobs declare theirs under `metrics:`",
                    known.join(", ")
                ),
            ));
        }
        if !(claim.alpha > 0.0 && claim.alpha < 1.0) {
            return Err(loaded.error_at_path(
                &field("alpha"),
                format!("claim `{}` has alpha {}", claim.id, claim.alpha),
                "alpha is a significance level in (0, 1), usually 0.05",
            ));
        }
        // One comparison runs one test: two claims on the same pair and metric must
        // not ask for different ones.
        let same_comparison = |other: &&crate::config::Claim| {
            other.metric == claim.metric
                && ((other.better == claim.better && other.than == claim.than)
                    || (other.better == claim.than && other.than == claim.better))
        };
        if let Some(other) = config
            .claims
            .iter()
            .take_while(|other| other.id != claim.id)
            .filter(same_comparison)
            .find(|other| other.test != claim.test)
        {
            return Err(loaded.error_at_path(
                &field("id"),
                format!(
                    "claims `{}` and `{}` test the same comparison with `{}` and `{}`",
                    other.id,
                    claim.id,
                    other.test.as_str(),
                    claim.test.as_str()
                ),
                "a comparison runs one test, chosen before the data: give both claims the same `test`",
            ));
        }
    }
    Ok(())
}

fn validate_resources(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let resources = &loaded.config.resources;
    let value_of = |key: &'static str| [At::Key("resources"), At::Key(key), At::ValueOfKey];
    if resources.max_attempts == 0 || resources.max_attempts > 100 {
        return Err(loaded.error_at_path(
            &value_of("max_attempts"),
            format!("max_attempts is {}", resources.max_attempts),
            "use between 1 and 100",
        ));
    }
    if resources.data_parallel == 0 || resources.data_parallel > 1024 {
        return Err(loaded.error_at_path(
            &value_of("data_parallel"),
            format!("data_parallel is {}", resources.data_parallel),
            "use between 1 and 1024 ranks",
        ));
    }
    match humantime::parse_duration(&resources.timeout) {
        Ok(timeout) if !timeout.is_zero() => Ok(()),
        _ => Err(loaded.error_at_path(
            &value_of("timeout"),
            format!("timeout `{}` is not a positive duration", resources.timeout),
            "write durations like 90s, 30m or 2h",
        )),
    }
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
