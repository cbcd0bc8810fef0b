//! `expcluster report`: `report.md` in the workspace, the experiment in one page:
//! the idea's current version, every stage summary as a table, the claims and their
//! verdicts (the research log's `hypothesis_evaluated` events), the figures, and the
//! idea's evolution. Built only from the workspace's files, so it can be rerun at any
//! time and reads the same on a machine without the coordinator.

use super::WorkspaceArgs;
use crate::output::format_value;
use crate::workspace_arg;
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Redraw the figures first (from the result files).
    #[arg(long)]
    pub plot: bool,
    /// Print {"report": path} as JSON.
    #[arg(long)]
    pub json: bool,
}

const SUMMARIES: [(&str, &str); 3] = [
    ("baselines", "baseline_summary.json"),
    ("full", "research_summary.json"),
    ("ablations", "ablation_summary.json"),
];

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_arg::resolve(
        args.workspace.workspace.as_deref(),
        args.workspace.idea.as_deref(),
    )?;
    let (path, _) = write(&root, args.plot)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"report": path.display().to_string()})
        );
    } else {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `report.md` (after redrawing the figures when `plot`); returns its path and
/// text.
pub fn write(root: &Path, plot: bool) -> anyhow::Result<(PathBuf, String)> {
    if plot {
        expcluster_figures::write_all_figures(root)?;
    }
    let text = render(root);
    let path = root.join("report.md");
    let temp = root.join(".report.md.tmp");
    std::fs::write(&temp, &text)
        .and_then(|()| std::fs::rename(&temp, &path))
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
    Ok((path, text))
}

/// The whole report.
pub fn render(root: &Path) -> String {
    let idea_meta = read_json(&root.join("idea.json")).unwrap_or(Value::Null);
    let title = idea_meta["title"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            root.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let mut out = format!("# Experiment report: {title}\n\n");
    let _ = writeln!(
        out,
        "Idea version {}, last updated {} ({}).\n",
        idea_meta["version"]
            .as_u64()
            .map_or("?".to_owned(), |v| v.to_string()),
        idea_meta["last_updated"].as_str().unwrap_or("?"),
        idea_meta["update_reason"]
            .as_str()
            .unwrap_or("no reason recorded")
    );
    out.push_str("## The idea (current version)\n\n");
    out.push_str(&demote_headings(
        &read_text(&root.join("idea.md")).unwrap_or_else(|| "_idea.md is missing._\n".to_owned()),
    ));
    out.push_str("\n## Results by stage\n\n");
    let mut any = false;
    for (stage, file) in SUMMARIES {
        if let Some(summary) = read_json(&root.join(file)) {
            any = true;
            let _ = writeln!(out, "### {stage} (`{file}`)\n");
            out.push_str(&summary_section(&summary));
        }
    }
    if !any {
        out.push_str("_No stage summary yet: run `expcluster submit`._\n\n");
    }
    out.push_str("## Claims and verdicts\n\n");
    out.push_str(&claims_section(root));
    out.push_str("## Figures\n\n");
    out.push_str(&figures_section(root));
    out.push_str("## Evolution of the idea\n\n");
    out.push_str(&demote_headings(
        &read_text(&root.join("idea_evolution.md"))
            .unwrap_or_else(|| "_idea_evolution.md is missing._\n".to_owned()),
    ));
    out
}

fn summary_section(summary: &Value) -> String {
    let mut out = String::new();
    if let Some(methods) = summary["methods"].as_object() {
        let mut rows = vec![
            vec!["method", "metric", "n", "failed", "mean", "std", "95% CI"]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ];
        for (method, metrics) in methods {
            for (metric, stats) in metrics.as_object().into_iter().flatten() {
                let ci = match (&stats["ci95"], &stats["ci95_low"], &stats["ci95_high"]) {
                    (Value::Array(pair), _, _) if pair.len() == 2 => {
                        format!("[{}, {}]", number(&pair[0]), number(&pair[1]))
                    }
                    (_, low, high) if low.is_number() && high.is_number() => {
                        format!("[{}, {}]", number(low), number(high))
                    }
                    _ => "–".to_owned(),
                };
                let failed = if stats["n_failed"].is_null() {
                    &stats["n_nan"]
                } else {
                    &stats["n_failed"]
                };
                rows.push(vec![
                    method.clone(),
                    metric.clone(),
                    number(&stats["n"]),
                    number(failed),
                    number(&stats["mean"]),
                    number(&stats["std"]),
                    ci,
                ]);
            }
        }
        out.push_str(&markdown_table(&rows));
        out.push('\n');
    }
    if let Some(best) = summary["best_method"].as_str() {
        let _ = writeln!(out, "Best method: **{best}**.\n");
    }
    if let Some(findings) = summary["key_findings"].as_array() {
        for finding in findings.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "- {finding}");
        }
        out.push('\n');
    }
    if let Some(ablations) = summary["ablations"].as_array() {
        let mut rows = vec![vec![
            "ablation".to_owned(),
            "change".into(),
            "impact".into(),
            "conclusion".into(),
        ]];
        for ablation in ablations {
            let impact = ablation["impact"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}: {}", impact_text(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            rows.push(vec![
                text(&ablation["name"]),
                text(&ablation["change"]),
                impact,
                text(&ablation["conclusion"]),
            ]);
        }
        out.push_str(&markdown_table(&rows));
        out.push('\n');
    }
    if let Some(analysis) = summary["analysis"].as_str() {
        let _ = writeln!(out, "{analysis}\n");
    }
    out
}

/// Every `hypothesis_evaluated` event of the research log, in order: each claim's
/// verdict after each stage, with its evidence.
pub fn claim_verdicts(root: &Path) -> Vec<Value> {
    let log = read_text(&root.join("research_log.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["type"] == "hypothesis_evaluated")
        .collect()
}

fn claims_section(root: &Path) -> String {
    let events = claim_verdicts(root);
    if events.is_empty() {
        return "_No claim evaluated yet (claims are checked after each stage)._\n\n".to_owned();
    }
    let mut rows = vec![vec![
        "claim".to_owned(),
        "stage".into(),
        "idea version".into(),
        "verdict".into(),
        "evidence".into(),
    ]];
    for event in &events {
        let claim = match event["statement"].as_str() {
            Some(statement) => format!("{} — {statement}", text(&event["claim"])),
            None => format!(
                "{}: {} better than {} on {}",
                text(&event["claim"]),
                text(&event["better"]),
                text(&event["than"]),
                text(&event["metric"])
            ),
        };
        let version = event["idea_version"]
            .as_u64()
            .or_else(|| event["version"].as_u64())
            .map_or("?".to_owned(), |v| v.to_string());
        rows.push(vec![
            claim,
            text(&event["stage"]),
            version,
            verdict_cell(event),
            text(&event["summary"]),
        ]);
    }
    markdown_table(&rows) + "\n"
}

/// The verdict, flagged when another stage's verdict of the claim disagrees (the
/// event's `conflicts`): both stand, so the table shows both.
fn verdict_cell(event: &Value) -> String {
    let verdict = format!("**{}**", text(&event["status"]));
    let conflicts: Vec<String> = event["conflicts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} in {}", text(&c["status"]), text(&c["stage"])))
        .collect();
    if conflicts.is_empty() {
        verdict
    } else {
        format!("{verdict} (CONFLICT: {})", conflicts.join(", "))
    }
}

fn figures_section(root: &Path) -> String {
    let mut files: Vec<String> = std::fs::read_dir(root.join("figures"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".png") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        return "_No figures yet: `expcluster plot` draws them from the results._\n\n".to_owned();
    }
    files.sort();
    let mut out = String::new();
    for file in files {
        let caption = file.trim_end_matches(".png").replace('_', " ");
        let _ = writeln!(out, "![{caption}](figures/{file})\n");
    }
    out
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| cell.replace('|', "\\|").replace('\n', " "))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if index == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(row.len()));
        }
    }
    out
}

/// Headings of included files move two levels down, under the report's own.
fn demote_headings(markdown: &str) -> String {
    let mut out = String::new();
    for line in markdown.lines() {
        if line.starts_with('#') {
            out.push_str("##");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn number(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_value),
        Value::String(s) => s.clone(),
        Value::Null => "–".to_owned(),
        other => other.to_string(),
    }
}

/// An impact is a number, or an object with the difference and its interval.
fn impact_text(value: &Value) -> String {
    let difference = &value["difference"];
    if difference.is_null() {
        return number(value);
    }
    match &value["ci95"] {
        Value::Array(pair) if pair.len() == 2 => format!(
            "{} [{}, {}]",
            number(difference),
            number(&pair[0]),
            number(&pair[1])
        ),
        _ => number(difference),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
