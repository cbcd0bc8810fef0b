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
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let config_path = root.join("config.yaml");
    let loaded = match ExperimentConfig::load(&config_path) {
        Ok(loaded) => loaded,
        Err(err) => {
            // Bounded like the load: a config of gigabytes is never read whole.
            let text = read_config_text(&config_path).unwrap_or_default();
            eprint!("{}", render_error(&err, &text));
            return Ok(ExitCode::from(2));
        }
    };
    let code = expcluster_coordinator::code_files::read_code_files(&root)?;
    let goal = match loaded.config.primary_metric.goal {
        Goal::Max => "higher is better",
        Goal::Min => "lower is better",
    };
    println!(
        "{}: valid; proposed method `{}`, primary metric {} ({goal})",
        loaded.config.name,
        loaded.config.proposed_method(),
        loaded.config.primary_metric.name
    );
    let mut rows = vec![["stage", "method", "kind", "sweep points", "seeds", "jobs"]
        .map(str::to_owned)
        .to_vec()];
    let mut per_stage = Vec::new();
    let mut total = 0;
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
            Err(err) => {
                eprint!("{}", render_error(&err, &loaded.text));
                return Ok(ExitCode::from(2));
            }
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
            rows.push(vec![
                stage.to_string(),
                variant,
                kind.to_owned(),
                points.len().to_string(),
                seeds.len().to_string(),
                count.to_string(),
            ]);
        }
        per_stage.push(format!("{stage} {}", jobs.len()));
        total += jobs.len();
    }
    print!("{}", render(&rows));
    println!("per stage: {}", per_stage.join(", "));
    println!("{total} job(s) in all; nothing was run");
    Ok(ExitCode::SUCCESS)
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
