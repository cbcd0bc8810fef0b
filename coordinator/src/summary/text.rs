//! The sentences of the summaries (`analysis`, `key_findings`, ablation conclusions),
//! generated from the computed numbers only: every figure in a sentence is a field of
//! the same file, so the text can never claim more than the statistics show.

use super::analysis::{Group, StageAnalysis, Test, SUMMARY_ALPHA};
use expcluster_core::config::{Goal, LoadedConfig};
use expcluster_stats::Descriptive;

/// A number for prose: 4 decimals, or scientific notation when tiny or huge.
pub fn fmt_num(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

/// A signed difference for prose.
pub fn fmt_diff(value: f64) -> String {
    let text = fmt_num(value);
    if value > 0.0 {
        format!("+{text}")
    } else {
        text
    }
}

/// A p-value for prose.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

pub fn goal_word(goal: Goal) -> &'static str {
    match goal {
        Goal::Max => "higher is better",
        Goal::Min => "lower is better",
    }
}

/// `0.8123 ± 0.0100 (sd, n = 5, 1 failed seed)`.
pub fn describe_short(stats: &Descriptive) -> String {
    let Some(mean) = stats.mean else {
        return format!("no successful seed ({} failed)", stats.n_nan);
    };
    let spread = stats
        .std
        .map_or(String::new(), |sd| format!(" ± {} sd", fmt_num(sd)));
    format!(
        "{}{spread} (n = {}, {} failed)",
        fmt_num(mean),
        stats.n,
        stats.n_nan
    )
}

/// What one comparison shows, e.g. `proposed vs baseline on acc: difference +0.07
/// [95% CI +0.05, +0.09], paired_t p = 0.001 (Holm 0.003): proposed is significantly
/// better`.
pub fn test_sentence(analysis: &StageAnalysis, loaded: &LoadedConfig, test: &Test) -> String {
    let (a, b) = (&analysis.groups[test.a].stem, &analysis.groups[test.b].stem);
    let c = &test.comparison;
    let Some(diff) = c.mean_diff else {
        return format!(
            "{a} vs {b} on {}: not comparable ({})",
            test.metric,
            c.notes.join("; ")
        );
    };
    let interval = match (c.mean_diff_ci_low, c.mean_diff_ci_high) {
        (Some(low), Some(high)) => format!(" [95% CI {}, {}]", fmt_diff(low), fmt_diff(high)),
        _ => String::new(),
    };
    let failed = c.a.n_nan + c.b.n_nan;
    let failed = if failed > 0 {
        format!(", {failed} failed seed(s) excluded")
    } else {
        String::new()
    };
    let (Some(name), Some(p), Some(p_holm)) = (test.test, test.p_value, test.p_holm) else {
        return format!(
            "{a} vs {b} on {}: difference {}{interval}{failed}; no test was possible ({})",
            test.metric,
            fmt_diff(diff),
            c.notes.join("; ")
        );
    };
    let verdict = match (
        test.significant(SUMMARY_ALPHA),
        test.better_side(loaded.config.goal_of(&test.metric)),
    ) {
        (true, Some(side)) => format!("{} is significantly better", analysis.groups[side].stem),
        _ => format!("no significant difference at α = {SUMMARY_ALPHA}"),
    };
    format!(
        "{a} vs {b} on {}: difference {}{interval}, {name} p = {} (Holm p = {}){failed}: {verdict}",
        test.metric,
        fmt_diff(diff),
        fmt_p(p),
        fmt_p(p_holm)
    )
}

/// The best group on the primary metric by its goal (first on ties).
pub fn best_group(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Option<usize> {
    let goal = loaded.config.goal_of(&analysis.primary_metric);
    let mut best: Option<(usize, f64)> = None;
    for (index, group) in analysis.groups.iter().enumerate() {
        let Some(mean) = group.describe(&analysis.primary_metric).mean else {
            continue;
        };
        let better = match (best, goal) {
            (None, _) => true,
            (Some((_, current)), Goal::Max) => mean > current,
            (Some((_, current)), Goal::Min) => mean < current,
        };
        if better {
            best = Some((index, mean));
        }
    }
    best.map(|(index, _)| index)
}

/// Findings in order of importance: the best group, each primary-metric comparison,
/// the failed seeds, the correction used.
pub fn findings(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Vec<String> {
    let primary = &analysis.primary_metric;
    let goal = loaded.config.goal_of(primary);
    let mut out = Vec::new();
    match best_group(analysis, loaded) {
        Some(best) => {
            let group = &analysis.groups[best];
            out.push(format!(
                "Best on {primary} ({}): {}{} with {}.",
                goal_word(goal),
                group.stem,
                point_text(group),
                describe_short(&group.describe(primary))
            ));
        }
        None => out.push(format!(
            "No run produced a finite {primary}: nothing to rank."
        )),
    }
    for test in analysis.tests.iter().filter(|t| &t.metric == primary) {
        out.push(format!("{}.", test_sentence(analysis, loaded, test)));
    }
    let failed: usize = analysis
        .groups
        .iter()
        .map(|g| g.failed_seeds(primary).len())
        .sum();
    let total: usize = analysis.groups.iter().map(|g| g.seeds.len()).sum();
    if failed > 0 {
        out.push(format!(
            "{failed} of {total} seed(s) have no finite {primary} (failed runs); they are excluded from the statistics and counted in n_failed."
        ));
    }
    out.push(format!(
        "p-values are Holm–Bonferroni adjusted over the {} comparisons of this stage.",
        analysis.family_size
    ));
    out
}

fn point_text(group: &Group) -> String {
    if group.sweep_point.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = group
        .sweep_point
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    format!(" ({})", parts.join(", "))
}
