//! The sentences of the summaries (`analysis`, `key_findings`, ablation conclusions),
//! generated from the computed numbers only: every figure in a sentence is a field of
//! the same file, so the text can never claim more than the statistics show.

use super::analysis::{Group, StageAnalysis, Test, SUMMARY_ALPHA};
use expcluster_core::config::{Goal, LoadedConfig};
use expcluster_stats::{Descriptive, Interval};

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

/// An interval for prose: `95% CI [+0.0010, +0.0156] (paired t interval)`; an end
/// the samples are too small to bound prints as ∞.
pub fn fmt_interval(interval: &Interval) -> String {
    let end = |value: f64| {
        if value.is_finite() {
            fmt_diff(value)
        } else if value > 0.0 {
            "+∞".to_owned()
        } else {
            "−∞".to_owned()
        }
    };
    format!(
        "{}% CI [{}, {}] ({})",
        fmt_num_short(100.0 * interval.confidence),
        end(interval.low),
        end(interval.high),
        interval.method.label()
    )
}

/// `99`, `95`, `97.5`: a confidence level in percent without trailing zeros.
fn fmt_num_short(percent: f64) -> String {
    let text = format!("{percent:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The test and its interval, e.g. `paired t-test p = 0.0412, 95% CI [+0.0010,
/// +0.0156] (paired t interval)`; for a rank test the interval's estimate (the
/// Hodges–Lehmann shift) comes first, since it is not the mean difference.
pub fn test_and_interval(test: &Test) -> String {
    let c = &test.comparison;
    let Some(p) = c.p_value else {
        return format!("{} not possible", test.method.label());
    };
    let interval = match c.interval {
        Some(interval) if interval.method.estimates_mean_difference() => {
            format!(", {}", fmt_interval(&interval))
        }
        Some(interval) => format!(
            ", shift {} {}",
            fmt_diff(interval.estimate),
            fmt_interval(&interval)
        ),
        None => String::new(),
    };
    format!("{} p = {}{interval}", test.method.label(), fmt_p(p))
}

/// The seeds behind a comparison and the failed ones left out, e.g. `n = 4 pairs,
/// no failed seed` or `n = 4 vs 3, 1 failed seed excluded (baseline: seed 2)`.
pub fn sample_text(a: &Group, b: &Group, test: &Test) -> String {
    let c = &test.comparison;
    let size = match c.n_pairs {
        Some(pairs) => format!("n = {pairs} pairs"),
        None => format!("n = {} vs {}", c.a.n, c.b.n),
    };
    let failed: Vec<String> = [a, b]
        .iter()
        .filter_map(|group| {
            let seeds = group.failed_seeds(&test.metric);
            (!seeds.is_empty()).then(|| {
                let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
                format!(
                    "{}: seed{} {}",
                    group.stem,
                    if seeds.len() == 1 { "" } else { "s" },
                    list.join(", ")
                )
            })
        })
        .collect();
    let count = c.a.n_nan + c.b.n_nan;
    match count {
        0 => format!("{size}, no failed seed"),
        1 => format!("{size}, 1 failed seed excluded ({})", failed.join("; ")),
        _ => format!(
            "{size}, {count} failed seeds excluded ({})",
            failed.join("; ")
        ),
    }
}

/// What one comparison shows, e.g. `proposed vs baseline on acc: difference +0.07,
/// paired t-test p = 0.001, 95% CI [+0.05, +0.09] (paired t interval), Holm p = 0.003;
/// n = 4 pairs, no failed seed: proposed is significantly better`.
pub fn test_sentence(analysis: &StageAnalysis, loaded: &LoadedConfig, test: &Test) -> String {
    let (group_a, group_b) = (&analysis.groups[test.a], &analysis.groups[test.b]);
    let (a, b) = (&group_a.stem, &group_b.stem);
    let c = &test.comparison;
    let Some(diff) = c.mean_diff else {
        return format!(
            "{a} vs {b} on {}: not comparable ({})",
            test.metric,
            c.notes.join("; ")
        );
    };
    let sample = sample_text(group_a, group_b, test);
    let (Some(p_holm), Some(_)) = (test.p_holm, test.p_value) else {
        return format!(
            "{a} vs {b} on {}: difference {}; {} not possible ({}); {sample}",
            test.metric,
            fmt_diff(diff),
            test.method.label(),
            c.notes.join("; ")
        );
    };
    let verdict = match (
        test.significant(SUMMARY_ALPHA),
        test.better_side(loaded.config.goal_of(&test.metric)),
    ) {
        (true, Some(side)) => format!("{} is significantly better", analysis.groups[side].stem),
        _ => format!("no significant difference at α = {SUMMARY_ALPHA} after Holm"),
    };
    format!(
        "{a} vs {b} on {}: difference {}, {}, Holm p = {}; {sample}: {verdict}",
        test.metric,
        fmt_diff(diff),
        test_and_interval(test),
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
        "Each comparison runs the one test fixed before the data (a claim's `test:`, else the paired t-test on shared seeds, else Welch's) and reports the {}% interval that test implies; p-values are Holm–Bonferroni adjusted over the {} comparisons of this stage (exploratory; claims are judged with Holm over the declared claims only).",
        fmt_num_short(100.0 * (1.0 - SUMMARY_ALPHA)),
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
