//! The JSON of the three summaries, from a [`StageAnalysis`].
//!
//! Shapes follow the seed's examples (`methods[m][metric] = {mean, std, …}`,
//! `best_method`, `analysis`; `key_findings`, `best_configuration`,
//! `statistical_tests`; `ablations[{name, change, impact, conclusion}]`) and add n,
//! n_failed, se, the 95% CI, min, max, the failed seeds and the per-seed array of every
//! entry. Every comparison names its test and the interval that test implies
//! (docs/statistics.md). Undefined numbers are `null`. Nothing here reads a clock, so
//! the same results always give the same bytes.

use super::analysis::{Group, StageAnalysis, Test, SUMMARY_ALPHA};
use super::text::{best_group, fmt_diff, fmt_p, test_and_interval, test_sentence};
use expcluster_core::config::{Goal, LoadedConfig};
use expcluster_stats::{Comparison, Interval};
use serde_json::{json, Map, Value};

pub fn num(value: Option<f64>) -> Value {
    match value {
        Some(v) if v.is_finite() => Value::from(v),
        _ => Value::Null,
    }
}

/// The interval a comparison's test implies, with its method and what it estimates.
pub fn interval_json(interval: Option<&Interval>) -> Value {
    let Some(interval) = interval else {
        return Value::Null;
    };
    json!({
        "method": interval.method,
        "label": interval.method.label(),
        "confidence": interval.confidence,
        "estimand": interval.method.estimand(),
        "estimate": num(Some(interval.estimate)),
        "low": num(Some(interval.low)),
        "high": num(Some(interval.high)),
    })
}

/// `[low, high]` of the interval when it is about the difference of means (the t
/// tests), `null` otherwise: the `mean_diff_ci95` of the tables.
pub fn mean_diff_interval(comparison: &Comparison) -> Value {
    match comparison.interval {
        Some(interval) if interval.method.estimates_mean_difference() => {
            pair(Some(interval.low), Some(interval.high))
        }
        _ => Value::Null,
    }
}

fn pair(low: Option<f64>, high: Option<f64>) -> Value {
    match (low, high) {
        (Some(_), Some(_)) => json!([num(low), num(high)]),
        _ => Value::Null,
    }
}

fn goal_name(goal: Goal) -> &'static str {
    match goal {
        Goal::Max => "max",
        Goal::Min => "min",
    }
}

/// `experiment_results/<prefix>_<stem>_<metric>.npy` (written by `results.rs`).
pub fn values_file(analysis: &StageAnalysis, group: &Group, metric: &str) -> String {
    format!(
        "experiment_results/{}_{}_{metric}.npy",
        analysis.stage.results_prefix(),
        group.stem
    )
}

/// The curves file, when `results.rs` wrote one (some seed has more than one step).
pub fn curves_file(analysis: &StageAnalysis, group: &Group, metric: &str) -> Option<String> {
    let curves = group.curves.get(metric)?;
    curves.iter().any(|curve| curve.len() > 1).then(|| {
        format!(
            "experiment_results/{}_{}_{metric}_curves.npy",
            analysis.stage.results_prefix(),
            group.stem
        )
    })
}

/// `methods`: group stem → metric → descriptive statistics.
pub fn methods_table(analysis: &StageAnalysis) -> Value {
    let mut methods = Map::new();
    for group in &analysis.groups {
        let mut per_metric = Map::new();
        for metric in &analysis.metrics {
            let stats = group.describe(metric);
            let mut entry = json!({
                "n": stats.n,
                "n_failed": stats.n_nan,
                "mean": num(stats.mean),
                "std": num(stats.std),
                "se": num(stats.se),
                "ci95": pair(stats.ci95_low, stats.ci95_high),
                "min": num(stats.min),
                "max": num(stats.max),
                "median": num(stats.median),
                "failed_seeds": group.failed_seeds(metric),
                "values_file": values_file(analysis, group, metric),
            });
            if let (Some(file), Value::Object(map)) =
                (curves_file(analysis, group, metric), &mut entry)
            {
                map.insert("curves_file".into(), file.into());
            }
            per_metric.insert(metric.clone(), entry);
        }
        methods.insert(group.stem.clone(), Value::Object(per_metric));
    }
    Value::Object(methods)
}

/// `runs`: what each group is (variant, kind, sweep point, seeds).
pub fn runs_table(analysis: &StageAnalysis) -> Value {
    let mut runs = Map::new();
    for group in &analysis.groups {
        runs.insert(
            group.stem.clone(),
            json!({
                "method": group.variant,
                "kind": group.kind,
                "sweep_point": group.sweep_point,
                "seeds": group.seeds,
            }),
        );
    }
    Value::Object(runs)
}

/// One comparison, with every statistic the stats crate computed.
pub fn test_json(analysis: &StageAnalysis, loaded: &LoadedConfig, test: &Test) -> Value {
    let c = &test.comparison;
    let (a, b) = (&analysis.groups[test.a], &analysis.groups[test.b]);
    let goal = loaded.config.goal_of(&test.metric);
    json!({
        "metric": test.metric,
        "goal": goal_name(goal),
        "a": a.stem,
        "b": b.stem,
        "purpose": test.purpose.label(),
        "difference": "a - b",
        "paired": c.paired,
        "n_pairs": c.n_pairs,
        "n_a": c.a.n,
        "n_failed_a": c.a.n_nan,
        "failed_seeds_a": a.failed_seeds(&test.metric),
        "mean_a": num(c.a.mean),
        "n_b": c.b.n,
        "n_failed_b": c.b.n_nan,
        "failed_seeds_b": b.failed_seeds(&test.metric),
        "mean_b": num(c.b.mean),
        "mean_diff": num(c.mean_diff),
        "mean_diff_ci95": mean_diff_interval(c),
        "interval": interval_json(c.interval.as_ref()),
        "planned_test": test.method,
        "planned_test_reason": test.method_reason,
        "welch": c.welch,
        "mann_whitney": c.mann_whitney,
        "paired_t": c.paired_t,
        "cohens_d": num(c.cohens_d),
        "hedges_g": num(c.hedges_g),
        "cohens_dz": num(c.cohens_dz),
        "test": test.test,
        "p_value": num(test.p_value),
        "p_holm": num(test.p_holm),
        "significant": test.significant(SUMMARY_ALPHA),
        "better": test.better_side(goal).map(|side| analysis.groups[side].stem.clone()),
        "summary": test_sentence(analysis, loaded, test),
        "notes": c.notes,
    })
}

/// `statistical_tests`: the correction and every comparison of the stage.
pub fn statistical_tests(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Value {
    json!({
        "alpha": SUMMARY_ALPHA,
        "correction": "holm-bonferroni",
        "family_size": analysis.family_size,
        "primary_test": "chosen before the data: the test a claim on the pair asks for (config `test:`), else the paired t-test when both sides ran the same seeds and Welch's t-test otherwise; a test undefined for the data (zero variance) gives no p-value and no other test stands in (docs/statistics.md)",
        "interval": format!("the interval each comparison's test implies, at {}%: paired t → t interval of the mean paired difference, Welch → Welch–Satterthwaite interval, Mann–Whitney → Hodges–Lehmann shift with its exact or normal interval; it excludes 0 exactly when p < {SUMMARY_ALPHA}", 100.0 * (1.0 - SUMMARY_ALPHA)),
        "comparisons": analysis.tests.iter().map(|t| test_json(analysis, loaded, t)).collect::<Vec<_>>(),
    })
}

/// The best group on the primary metric, as `best_configuration`.
pub fn best_configuration(analysis: &StageAnalysis, loaded: &LoadedConfig) -> Value {
    let Some(best) = best_group(analysis, loaded) else {
        return Value::Null;
    };
    let group = &analysis.groups[best];
    let stats = group.describe(&analysis.primary_metric);
    json!({
        "run": group.stem,
        "method": group.variant,
        "sweep_point": group.sweep_point,
        "metric": analysis.primary_metric,
        "mean": num(stats.mean),
        "std": num(stats.std),
        "ci95": pair(stats.ci95_low, stats.ci95_high),
        "n": stats.n,
        "n_failed": stats.n_nan,
    })
}

/// Per group and metric with curves: the curves file and the mean curve over the
/// seeds that reached each step (numpy `nanmean(axis=0)`).
pub fn learning_curves(analysis: &StageAnalysis) -> Value {
    let mut out = Map::new();
    for group in &analysis.groups {
        let mut per_metric = Map::new();
        for metric in &analysis.metrics {
            let Some(file) = curves_file(analysis, group, metric) else {
                continue;
            };
            let curves = &group.curves[metric];
            let steps = curves.iter().map(Vec::len).max().unwrap_or(0);
            let mean: Vec<Value> = (0..steps)
                .map(|step| {
                    let values: Vec<f64> = curves
                        .iter()
                        .filter_map(|c| c.get(step).copied())
                        .filter(|v| v.is_finite())
                        .collect();
                    num((!values.is_empty())
                        .then(|| values.iter().sum::<f64>() / values.len() as f64))
                })
                .collect();
            per_metric.insert(
                metric.clone(),
                json!({"file": file, "shape": [curves.len(), steps], "mean": mean}),
            );
        }
        if !per_metric.is_empty() {
            out.insert(group.stem.clone(), Value::Object(per_metric));
        }
    }
    Value::Object(out)
}

/// `path: old → new` for each override that makes an ablation, read from what the
/// reference and the ablation actually ran.
pub fn ablation_change(loaded: &LoadedConfig, reference: &Group, ablation: &Group) -> String {
    let Some(overrides) = loaded.config.ablations.get(&ablation.variant) else {
        return "not in config.yaml any more".to_owned();
    };
    let parts: Vec<String> = overrides
        .keys()
        .map(|path| {
            let show =
                |job: &Value| lookup(job, path).map_or("(unset)".to_owned(), |v| v.to_string());
            format!(
                "{path}: {} → {}",
                show(&reference.resolved),
                show(&ablation.resolved)
            )
        })
        .collect();
    if parts.is_empty() {
        "no change (empty overrides)".to_owned()
    } else {
        parts.join("; ")
    }
}

fn lookup<'v>(job: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(job, |node, key| node.get(key))
}

/// One entry of `ablations`: the change, the impact per metric, the conclusion.
pub fn ablation_entry(analysis: &StageAnalysis, loaded: &LoadedConfig, index: usize) -> Value {
    let group = &analysis.groups[index];
    let reference = analysis.partner(&analysis.proposed, index);
    let change = reference.map_or("no reference run".to_owned(), |r| {
        ablation_change(loaded, &analysis.groups[r], group)
    });
    let mut impact = Map::new();
    let mut conclusion = format!(
        "The reference ({}) did not run, so the impact is unknown.",
        analysis.proposed
    );
    for test in analysis
        .tests
        .iter()
        .filter(|t| t.a == index && Some(t.b) == reference)
    {
        let goal = loaded.config.goal_of(&test.metric);
        let c = &test.comparison;
        let direction = match (test.significant(SUMMARY_ALPHA), test.better_side(goal)) {
            (true, Some(side)) if side == index => "better",
            (true, Some(_)) => "worse",
            _ => "no significant change",
        };
        impact.insert(
            test.metric.clone(),
            json!({
                "difference": num(c.mean_diff),
                "ci95": mean_diff_interval(c),
                "interval": interval_json(c.interval.as_ref()),
                "test": test.test,
                "planned_test": test.method,
                "p_value": num(test.p_value),
                "p_holm": num(test.p_holm),
                "hedges_g": num(c.hedges_g),
                "goal": goal_name(goal),
                "direction": direction,
                "n_ablated": c.a.n,
                "n_failed_ablated": c.a.n_nan,
                "n_full": c.b.n,
                "n_failed_full": c.b.n_nan,
                "failed_seeds_ablated": group.failed_seeds(&test.metric),
            }),
        );
        if test.metric == analysis.primary_metric {
            conclusion = ablation_conclusion(group, test, direction);
        }
    }
    json!({
        "name": group.stem,
        "ablation": group.variant,
        "sweep_point": group.sweep_point,
        "change": change,
        "difference": "ablated - full",
        "impact": impact,
        "conclusion": conclusion,
    })
}

fn ablation_conclusion(group: &Group, test: &Test, direction: &str) -> String {
    let c = &test.comparison;
    let numbers = match (c.mean_diff, test.p_holm) {
        (Some(diff), Some(p)) => format!(
            "{} {} ({}, Holm p = {})",
            test.metric,
            fmt_diff(diff),
            test_and_interval(test),
            fmt_p(p)
        ),
        (Some(diff), None) => format!(
            "{} {} ({} not possible)",
            test.metric,
            fmt_diff(diff),
            test.method.label()
        ),
        _ => format!("{} not comparable", test.metric),
    };
    let failed = c.a.n_nan + c.b.n_nan;
    let failed = if failed > 0 {
        format!(" {failed} failed seed(s) were excluded.")
    } else {
        String::new()
    };
    match direction {
        "worse" => format!("Ablating {} makes the method worse: {numbers}; the component matters.{failed}", group.variant),
        "better" => format!("Ablating {} makes the method better: {numbers}; the component hurts.{failed}", group.variant),
        _ => format!(
            "Ablating {} shows no significant change: {numbers}; no evidence the component matters at n = {}/{}.{failed}",
            group.variant, c.a.n, c.b.n
        ),
    }
}
