//! The numbers of a finished stage, computed once and shared by the summary file and
//! the claim evaluation, so both always report the same statistics.
//!
//! - A *group* is one variant at one sweep point; its per-seed values keep NaN for a
//!   failed seed (or a metric the job did not print), so every table counts failures.
//! - The comparisons of a stage: at every sweep point and for every metric, each
//!   method against the proposed one (`a` = proposed, `b` = the method), each ablation
//!   against the unablated reference (`a` = ablation, `b` = reference), and any pair a
//!   claim needs that is not already there (`a` = the claimed-better side).
//!   Differences are always `a − b`.
//! - Each comparison runs one test, chosen before the data ([`planned_test`],
//!   docs/statistics.md): the test a claim on the pair asks for (`test:`), else the
//!   paired t-test when both groups ran the same seeds (same seed, same data split and
//!   initialisation; failed pairs are dropped by the statistics crate) and Welch's
//!   t-test otherwise. A test that is undefined for the data (zero variance) gives no
//!   p-value; no other test stands in. Its interval is the one the test implies, at
//!   95%, so it excludes 0 exactly when p < 0.05. Holm–Bonferroni runs over the
//!   p-values of all comparisons of the stage.

use crate::stage::results::{group_by_variant, metric_names, JobOutcome};
use expcluster_core::config::{ClaimTest, Goal, LoadedConfig};
use expcluster_core::expand::VariantKind;
use expcluster_core::Stage;
use expcluster_stats::{
    compare, describe, holm_bonferroni, Comparison, Descriptive, StatsError, TestMethod,
};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::BTreeMap;

/// Significance level the summaries use for "significant" (claims carry their own);
/// the comparisons' intervals are at `1 - SUMMARY_ALPHA`.
pub const SUMMARY_ALPHA: f64 = 0.05;

/// One variant at one sweep point, with its per-seed values.
#[derive(Debug, Clone)]
pub struct Group {
    pub variant: String,
    pub kind: VariantKind,
    /// `<variant>` or `<variant>_p<k>`: the name part of its result files.
    pub stem: String,
    pub point_index: Option<usize>,
    pub sweep_point: IndexMap<String, Value>,
    pub seeds: Vec<u64>,
    /// What its jobs ran (the job template with every override applied).
    pub resolved: Value,
    /// Metric → final value per seed (NaN: failed seed or metric not printed).
    pub finals: BTreeMap<String, Vec<f64>>,
    /// Metric → learning curve per seed (empty for a failed seed).
    pub curves: BTreeMap<String, Vec<Vec<f64>>>,
}

impl Group {
    pub fn values(&self, metric: &str) -> &[f64] {
        self.finals.get(metric).map_or(&[], Vec::as_slice)
    }

    pub fn describe(&self, metric: &str) -> Descriptive {
        describe(self.values(metric))
    }

    /// Seeds whose value of `metric` is missing or not finite.
    pub fn failed_seeds(&self, metric: &str) -> Vec<u64> {
        self.values(metric)
            .iter()
            .zip(&self.seeds)
            .filter(|(value, _)| !value.is_finite())
            .map(|(_, seed)| *seed)
            .collect()
    }
}

/// Why a comparison is in the stage's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The proposed method (`a`) against another method (`b`).
    VersusProposed,
    /// An ablation (`a`) against the unablated reference (`b`).
    Ablation,
    /// A pair only a claim asked for.
    Claim(String),
}

impl Purpose {
    pub fn label(&self) -> String {
        match self {
            Purpose::VersusProposed => "versus_proposed".to_owned(),
            Purpose::Ablation => "ablation".to_owned(),
            Purpose::Claim(id) => format!("claim:{id}"),
        }
    }
}

/// One comparison of the stage's family.
#[derive(Debug, Clone)]
pub struct Test {
    pub metric: String,
    /// Indices into [`StageAnalysis::groups`].
    pub a: usize,
    pub b: usize,
    pub purpose: Purpose,
    /// The test, fixed before the data, and why it is that one.
    pub method: TestMethod,
    pub method_reason: String,
    pub comparison: Comparison,
    /// Name of the test behind `p_value` (`paired_t`, `welch`, `mann_whitney`);
    /// `None` when the test is undefined for the data.
    pub test: Option<&'static str>,
    pub p_value: Option<f64>,
    pub p_holm: Option<f64>,
}

impl Test {
    /// Which side is better by the metric's goal, when the difference is not zero.
    pub fn better_side(&self, goal: Goal) -> Option<usize> {
        let diff = self.comparison.mean_diff?;
        match (goal, diff.partial_cmp(&0.0)?) {
            (_, std::cmp::Ordering::Equal) => None,
            (Goal::Max, std::cmp::Ordering::Greater) | (Goal::Min, std::cmp::Ordering::Less) => {
                Some(self.a)
            }
            _ => Some(self.b),
        }
    }

    pub fn significant(&self, alpha: f64) -> bool {
        self.p_holm.is_some_and(|p| p < alpha)
    }
}

/// Everything the summary and the claims need about a finished stage.
#[derive(Debug, Clone)]
pub struct StageAnalysis {
    pub stage: Stage,
    pub proposed: String,
    pub primary_metric: String,
    pub metrics: Vec<String>,
    pub groups: Vec<Group>,
    pub tests: Vec<Test>,
    /// Number of comparisons with a p-value (the Holm family size).
    pub family_size: usize,
}

impl StageAnalysis {
    pub fn goal(&self, loaded: &LoadedConfig, metric: &str) -> Goal {
        loaded.config.goal_of(metric)
    }

    /// The groups of `variant`, in sweep-point order.
    pub fn groups_of(&self, variant: &str) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| self.groups[i].variant == variant)
            .collect()
    }

    /// The group of `variant` at the sweep point of group `like`.
    pub fn partner(&self, variant: &str, like: usize) -> Option<usize> {
        let point = self.groups[like].point_index;
        (0..self.groups.len())
            .find(|&i| self.groups[i].variant == variant && self.groups[i].point_index == point)
    }

    /// The comparison of groups `x` and `y` (either order) on `metric`.
    pub fn test_between(&self, metric: &str, x: usize, y: usize) -> Option<&Test> {
        self.tests
            .iter()
            .find(|t| t.metric == metric && ((t.a == x && t.b == y) || (t.a == y && t.b == x)))
    }
}

/// Computes the stage's groups, comparisons and Holm adjustment.
pub fn analyse(loaded: &LoadedConfig, stage: Stage, outcomes: &[JobOutcome]) -> StageAnalysis {
    let metrics = metric_names(outcomes);
    let groups: Vec<Group> = group_by_variant(outcomes)
        .into_iter()
        .map(|group| {
            let first = group.jobs.first().map(|job| &job.def);
            Group {
                kind: first.map_or(VariantKind::Method, |def| def.kind),
                sweep_point: first.map(|def| def.sweep_point.clone()).unwrap_or_default(),
                seeds: group.jobs.iter().map(|job| job.def.seed).collect(),
                resolved: first
                    .map(|def| Value::clone(&def.resolved))
                    .unwrap_or_default(),
                finals: metrics
                    .iter()
                    .map(|m| (m.clone(), group.finals(m)))
                    .collect(),
                curves: metrics
                    .iter()
                    .map(|m| {
                        let curves = group
                            .jobs
                            .iter()
                            .map(|job| {
                                if job.succeeded {
                                    job.series.get(m).cloned().unwrap_or_default()
                                } else {
                                    Vec::new()
                                }
                            })
                            .collect();
                        (m.clone(), curves)
                    })
                    .collect(),
                stem: group.file_stem(),
                point_index: group.point_index,
                variant: group.variant,
            }
        })
        .collect();
    analyse_groups(loaded, stage, metrics, groups)
}

/// The comparisons and Holm adjustment of a stage whose groups are known.
pub fn analyse_groups(
    loaded: &LoadedConfig,
    stage: Stage,
    metrics: Vec<String>,
    groups: Vec<Group>,
) -> StageAnalysis {
    let mut analysis = StageAnalysis {
        stage,
        proposed: loaded.config.proposed_method().to_owned(),
        primary_metric: loaded.config.primary_metric.name.clone(),
        metrics,
        groups,
        tests: Vec::new(),
        family_size: 0,
    };
    let pairs = comparison_pairs(loaded, &analysis);
    for (metric, a, b, purpose) in pairs {
        let test = run_test(loaded, &analysis, metric, a, b, purpose);
        analysis.tests.push(test);
    }
    let raw: Vec<f64> = analysis
        .tests
        .iter()
        .map(|t| t.p_value.unwrap_or(f64::NAN))
        .collect();
    let adjusted = holm_bonferroni(&raw);
    for (test, p_holm) in analysis.tests.iter_mut().zip(adjusted) {
        test.p_holm = (!p_holm.is_nan()).then_some(p_holm);
    }
    analysis.family_size = raw.iter().filter(|p| !p.is_nan()).count();
    analysis
}

/// (metric, a, b, purpose) of every comparison, in a stable order.
fn comparison_pairs(
    loaded: &LoadedConfig,
    analysis: &StageAnalysis,
) -> Vec<(String, usize, usize, Purpose)> {
    let mut pairs = Vec::new();
    for metric in &analysis.metrics {
        for (index, group) in analysis.groups.iter().enumerate() {
            if group.variant == analysis.proposed {
                continue;
            }
            let Some(reference) = analysis.partner(&analysis.proposed, index) else {
                continue;
            };
            if group.kind == VariantKind::Ablation {
                pairs.push((metric.clone(), index, reference, Purpose::Ablation));
            } else {
                pairs.push((metric.clone(), reference, index, Purpose::VersusProposed));
            }
        }
    }
    for claim in &loaded.config.claims {
        if !analysis.metrics.contains(&claim.metric) {
            continue;
        }
        for better in analysis.groups_of(&claim.better) {
            let Some(than) = analysis.partner(&claim.than, better) else {
                continue;
            };
            let covered = pairs.iter().any(|(m, a, b, _)| {
                *m == claim.metric && ((*a == better && *b == than) || (*a == than && *b == better))
            });
            if !covered && better != than {
                pairs.push((
                    claim.metric.clone(),
                    better,
                    than,
                    Purpose::Claim(claim.id.clone()),
                ));
            }
        }
    }
    pairs
}

fn run_test(
    loaded: &LoadedConfig,
    analysis: &StageAnalysis,
    metric: String,
    a: usize,
    b: usize,
    purpose: Purpose,
) -> Test {
    let (group_a, group_b) = (&analysis.groups[a], &analysis.groups[b]);
    let (method, method_reason) = planned_test(loaded, group_a, group_b, &metric);
    let comparison = compare(
        group_a.values(&metric),
        group_b.values(&metric),
        method,
        1.0 - SUMMARY_ALPHA,
    )
    .unwrap_or_else(|err| unreachable_comparison(group_a, group_b, &metric, method, err));
    Test {
        metric,
        a,
        b,
        purpose,
        method,
        method_reason,
        test: comparison.p_value.map(|_| method.as_str()),
        p_value: comparison.p_value,
        comparison,
        p_holm: None,
    }
}

/// The test of a comparison, from the config and the design only (never the data):
/// the test a claim on this pair and metric asks for, else paired t when both groups
/// ran the same seeds and Welch otherwise. A paired test asked for on groups that ran
/// different seeds cannot pair them, so it becomes Welch, and the reason says so.
pub fn planned_test(
    loaded: &LoadedConfig,
    a: &Group,
    b: &Group,
    metric: &str,
) -> (TestMethod, String) {
    let shared_seeds = a.seeds == b.seeds;
    let asked = loaded.config.claims.iter().find(|claim| {
        claim.metric == metric
            && claim.test != ClaimTest::Auto
            && ((claim.better == a.variant && claim.than == b.variant)
                || (claim.better == b.variant && claim.than == a.variant))
    });
    let design = if shared_seeds {
        (
            TestMethod::PairedT,
            "design: both sides ran the same seeds".to_owned(),
        )
    } else {
        (
            TestMethod::Welch,
            "design: the sides ran different seeds".to_owned(),
        )
    };
    let Some(claim) = asked else {
        return design;
    };
    match claim.test {
        ClaimTest::Auto => design,
        ClaimTest::PairedT if !shared_seeds => (
            TestMethod::Welch,
            format!(
                "claim `{}` asks for paired_t, but the sides ran different seeds: welch",
                claim.id
            ),
        ),
        ClaimTest::PairedT => (
            TestMethod::PairedT,
            format!("claim `{}` asks for paired_t", claim.id),
        ),
        ClaimTest::Welch => (
            TestMethod::Welch,
            format!("claim `{}` asks for welch", claim.id),
        ),
        ClaimTest::MannWhitney => (
            TestMethod::MannWhitney,
            format!("claim `{}` asks for mann_whitney", claim.id),
        ),
    }
}

/// `compare` only fails on a paired length mismatch (the seeds are equal whenever the
/// test is paired) or an invalid confidence (a constant); this keeps the stage
/// finishing, with an untested comparison, rather than panicking if that changes.
fn unreachable_comparison(
    a: &Group,
    b: &Group,
    metric: &str,
    method: TestMethod,
    err: StatsError,
) -> Comparison {
    Comparison {
        a: a.describe(metric),
        b: b.describe(metric),
        method,
        paired: method.is_paired(),
        n_pairs: None,
        mean_diff: None,
        p_value: None,
        interval: None,
        paired_t: None,
        welch: None,
        mann_whitney: None,
        cohens_d: None,
        hedges_g: None,
        cohens_dz: None,
        notes: vec![format!("comparison could not be computed: {err}")],
    }
}
