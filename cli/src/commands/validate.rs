//! `expcluster validate`: check the config and print the job matrix, running nothing.
//!
//! An error is shown with the offending line and a caret under the column, so the
//! researcher sees what the position points at; the exit status is 2.

use super::WorkspaceArgs;
use crate::output::render;
use crate::workspace_arg;
use clap::Args;
use expcluster_core::config::Goal;
use expcluster_core::config_limits::read_config_text;
use expcluster_core::expand::{expand_stage, StageRequest};
use expcluster_core::{ConfigError, ExperimentConfig, Stage, VariantKind};
use indexmap::IndexMap;
use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

/// A valid config's job matrix.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct JobMatrix {
    /// The config's `name`.
    pub name: String,
    pub proposed_method: String,
    pub primary_metric: String,
    /// `higher is better` or `lower is better`.
    pub goal: String,
    /// One row per (stage, method or ablation).
    pub rows: Vec<MatrixRow>,
    /// Jobs per stage the config defines, in stage order.
    pub jobs_per_stage: Vec<StageJobs>,
    pub jobs_total: usize,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct StageJobs {
    pub stage: String,
    pub jobs: usize,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct MatrixRow {
    pub stage: String,
    pub method: String,
    /// `method`, `ablation` or `reference`.
    pub kind: String,
    pub sweep_points: usize,
    pub seeds: usize,
    pub jobs: usize,
}

/// A config error where the config loader found it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ConfigProblem {
    pub file: String,
    /// 1-based; 0 when the error has no position.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
    /// `error: file:line:column: message`, the line with a caret, and the hint.
    pub rendered: String,
}

impl ConfigProblem {
    fn new(err: &ConfigError, text: &str) -> Self {
        Self {
            file: err.file.display().to_string(),
            line: err.line,
            column: err.column,
            message: err.message.clone(),
            hint: err.hint.clone(),
            rendered: render_error(err, text),
        }
    }
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let matrix = match check(&root)? {
        Ok(matrix) => matrix,
        Err(problem) => {
            eprint!("{}", problem.rendered);
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "{}: valid; proposed method `{}`, primary metric {} ({})",
        matrix.name, matrix.proposed_method, matrix.primary_metric, matrix.goal
    );
    let mut rows = vec![["stage", "method", "kind", "sweep points", "seeds", "jobs"]
        .map(str::to_owned)
        .to_vec()];
    for row in &matrix.rows {
        rows.push(vec![
            row.stage.clone(),
            row.method.clone(),
            row.kind.clone(),
            row.sweep_points.to_string(),
            row.seeds.to_string(),
            row.jobs.to_string(),
        ]);
    }
    let per_stage: Vec<String> = matrix
        .jobs_per_stage
        .iter()
        .map(|per| format!("{} {}", per.stage, per.jobs))
        .collect();
    print!("{}", render(&rows));
    println!("per stage: {}", per_stage.join(", "));
    println!("{} job(s) in all; nothing was run", matrix.jobs_total);
    Ok(ExitCode::SUCCESS)
}

/// Loads the workspace's config.yaml and expands every stage it defines, running
/// nothing: the job matrix, or the first error with its position. The outer error is
/// for what is not the config's fault (the code files cannot be read).
pub fn check(root: &Path) -> anyhow::Result<Result<JobMatrix, ConfigProblem>> {
    let config_path = root.join("config.yaml");
    let loaded = match ExperimentConfig::load(&config_path) {
        Ok(loaded) => loaded,
        Err(err) => {
            // Bounded like the load: a config of gigabytes is never read whole.
            let text = read_config_text(&config_path).unwrap_or_default();
            return Ok(Err(ConfigProblem::new(&err, &text)));
        }
    };
    let code = expcluster_coordinator::store::code_files::read_code_files(root)?;
    let goal = match loaded.config.primary_metric.goal {
        Goal::Max => "higher is better",
        Goal::Min => "lower is better",
    };
    let mut matrix = JobMatrix {
        name: loaded.config.name.clone(),
        proposed_method: loaded.config.proposed_method().to_string(),
        primary_metric: loaded.config.primary_metric.name.clone(),
        goal: goal.to_owned(),
        rows: Vec::new(),
        jobs_per_stage: Vec::new(),
        jobs_total: 0,
    };
    for stage in Stage::ALL {
        let defined = expcluster_core::config::stage_is_defined(&loaded.config, stage);
        if !defined {
            continue;
        }
        let jobs = match expand_stage(
            &loaded,
            StageRequest {
                stage,
                code_digest: &code.digest,
            },
        ) {
            Ok(jobs) => jobs,
            Err(err) => return Ok(Err(ConfigProblem::new(&err, &loaded.text))),
        };
        // Sets, not lists: a 100,000-point sweep is counted in linear time.
        type Seen = (VariantKind, HashSet<String>, HashSet<u64>, usize);
        let mut per_variant: IndexMap<String, Seen> = IndexMap::new();
        for job in &jobs {
            let entry = per_variant.entry(job.variant.clone()).or_insert((
                job.kind,
                HashSet::new(),
                HashSet::new(),
                0,
            ));
            entry.1.insert(job.sweep_label());
            entry.2.insert(job.seed);
            entry.3 += 1;
        }
        for (variant, (kind, points, seeds, count)) in per_variant {
            let kind = match kind {
                VariantKind::Method => "method",
                VariantKind::Ablation => "ablation",
                VariantKind::Reference => "reference",
            };
            matrix.rows.push(MatrixRow {
                stage: stage.to_string(),
                method: variant,
                kind: kind.to_owned(),
                sweep_points: points.len(),
                seeds: seeds.len(),
                jobs: count,
            });
        }
        matrix.jobs_per_stage.push(StageJobs {
            stage: stage.to_string(),
            jobs: jobs.len(),
        });
        matrix.jobs_total += jobs.len();
    }
    Ok(Ok(matrix))
}

/// At most this many characters of the offending line are shown, around the column
/// (a generated config can be one line of megabytes).
const SHOWN_CHARS: usize = 120;

/// `error: file:line:column: message`, the line with a caret, and the hint.
fn render_error(err: &ConfigError, text: &str) -> String {
    let mut out = format!("error: {}", err.file.display());
    if err.line > 0 {
        out.push_str(&format!(":{}:{}", err.line, err.column));
    }
    out.push_str(&format!(": {}\n", err.message));
    if let Some(line) = text
        .lines()
        .nth(err.line.wrapping_sub(1))
        .filter(|_| err.line > 0)
    {
        let number = err.line.to_string();
        let pad = " ".repeat(number.len());
        let column = err.column.saturating_sub(1);
        let start = column.saturating_sub(SHOWN_CHARS / 2);
        let shown: String = line.chars().skip(start).take(SHOWN_CHARS).collect();
        let (cut_before, cut_after) = (
            if start > 0 { "…" } else { "" },
            if line.chars().nth(start + SHOWN_CHARS).is_some() {
                "…"
            } else {
                ""
            },
        );
        let before: String = cut_before
            .chars()
            .chain(shown.chars().take(column - start))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "{pad} |\n{number} | {cut_before}{shown}{cut_after}\n{pad} | {before}^\n"
        ));
    }
    if !err.hint.is_empty() {
        out.push_str(&format!("  hint: {}\n", err.hint));
    }
    out
}
