//! Claims (`config.yaml` `claims:`) judged against a finished stage's statistics.
//!
//! A claim "`better` beats `than` on `metric`" is evaluated in every stage where both
//! sides ran, at every sweep point where both ran, on the stage's comparison of the
//! two (see [`crate::stage::summary::analysis`]), with Holm's correction over the
//! declared claims' tests in the stage ([`ClaimFamily`]: every claim at every sweep
//! point where it is tested, and nothing else). The rules, per sweep point:
//! - **supported**: the difference goes the claimed way by the metric's goal and the
//!   Holm-adjusted p-value is below the claim's alpha;
//! - **contradicted**: the difference goes the other way and the Holm-adjusted
//!   p-value is below alpha (the other side is significantly better);
//! - **inconclusive** otherwise: no significant difference, a zero difference, or no
//!   test possible (too few successful seeds). A non-significant effect in the wrong
//!   direction is inconclusive, not a contradiction — absence of evidence is not
//!   evidence against — and the evaluation says which way it points.
//!
//! Across sweep points: contradicted if any point contradicts the claim, supported if
//! every point supports it, inconclusive otherwise. Adjusting with Holm makes both
//! verdicts conservative in the same way.
//!
//! Each point's sentence names the test (fixed before the data, see
//! [`crate::stage::summary::analysis::planned_test`]), the interval that test implies at
//! `1 - alpha` (so it excludes 0 exactly when the unadjusted p < alpha, and says so
//! when Holm's correction is what keeps the claim from being supported), the seeds
//! and every failed seed left out. An inconclusive point adds its power figures at
//! `alpha / m`, the strictest Holm step: the smallest difference its seeds detect
//! with 80% power, and the seeds that would detect the difference observed.

use crate::stage::across_stages::{conflicts, other_stage_verdicts, pool, AcrossStage, PointData};
use crate::stage::claims_text::{
    across_json, across_text, conflict_text, look_text, next_look_text, power_level_text,
    power_sentence,
};
use crate::stage::looks::{looked_test, LookedTest, StageLook};
use crate::stage::summary::analysis::{StageAnalysis, Test};
use crate::stage::summary::render::{interval_json, mean_diff_interval, num};
use crate::stage::summary::text::{fmt_diff, fmt_num, fmt_p, sample_text, test_and_interval};
use expcluster_core::config::{Claim, Goal, LoadedConfig};
use expcluster_stats::{
    compare, holm_bonferroni, power_analysis, t_test_power, Comparison, Interval, PowerDesign,
};
use serde::Serialize;
use serde_json::{json, Value};

/// The power an inconclusive claim's figures are for.
const POWER: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Supported,
    Contradicted,
    Inconclusive,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Supported => "supported",
            ClaimStatus::Contradicted => "contradicted",
            ClaimStatus::Inconclusive => "inconclusive",
        }
    }
}

/// One claim's verdict in one stage, with the numbers behind it.
#[derive(Debug, Clone)]
pub struct ClaimEvaluation {
    pub claim: Claim,
    pub status: ClaimStatus,
    /// One object per sweep point where both sides ran.
    pub evidence: Vec<Value>,
    /// One sentence with the decisive numbers.
    pub summary: String,
    /// The stage's two-look design and which look this is, if it declares one.
    pub sequential: Option<Value>,
    /// Other stages' verdicts this one disagrees with (supported against
    /// contradicted): both stand.
    pub conflicts: Vec<Value>,
}

impl ClaimEvaluation {
    /// The payload of the `hypothesis_evaluated` event.
    pub fn event_payload(
        &self,
        loaded: &LoadedConfig,
        stage_run: u64,
        analysis: &StageAnalysis,
    ) -> Value {
        json!({
            "claim": self.claim.id,
            "statement": self.claim.statement,
            "better": self.claim.better,
            "than": self.claim.than,
            "metric": self.claim.metric,
            "goal": match loaded.config.goal_of(&self.claim.metric) { Goal::Max => "max", Goal::Min => "min" },
            "alpha": self.claim.alpha,
            "stage": analysis.stage,
            "stage_run": stage_run,
            "status": self.status,
            "rule": "supported/contradicted: Holm-adjusted p < alpha (Holm over the declared claims' tests in this stage) with the difference for/against the claim; inconclusive otherwise. Under a declared two-look design the p Holm takes is the sequential p-value (the smallest alpha at which the design rejects by this look). The test is fixed before the data (the claim's `test`, else paired t on shared seeds, Welch otherwise) and the interval is the one it implies, at 1 - alpha (1 - the look's nominal alpha under a design); power figures are at alpha / family size (the second look's nominal level of it under a design) (docs/statistics.md)",
            "evidence": self.evidence,
            "summary": self.summary,
            "sequential": self.sequential,
            "conflicts": self.conflicts,
        })
    }
}

/// What a stage's claims are judged with besides its own results.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageContext<'a> {
    /// Where the stage's two-look design stands, if it declares one.
    pub look: Option<&'a StageLook>,
    /// The digest of the code the stage ran (part of each side's configuration).
    pub code_digest: &'a str,
    /// Earlier `hypothesis_evaluated` events (other stages' verdicts and data).
    pub earlier: &'a [Value],
}

/// Evaluates every claim whose two sides ran in the stage and whose metric it produced.
pub fn evaluate(
    loaded: &LoadedConfig,
    analysis: &StageAnalysis,
    context: &StageContext<'_>,
) -> Vec<ClaimEvaluation> {
    let look = context.look;
    let points = claim_points(loaded, analysis);
    let looked: Vec<Option<LookedTest>> = points
        .iter()
        .map(|point| {
            look.map(|look| {
                let claim = &loaded.config.claims[point.claim];
                looked_test(
                    analysis,
                    look,
                    &claim.metric,
                    (point.better, point.than),
                    point.test,
                )
            })
        })
        .collect();
    let decisive: Vec<Option<f64>> = points
        .iter()
        .zip(&looked)
        .map(|(point, looked)| match looked {
            Some(looked) => looked.sequential_p,
            None => point.test.p_value,
        })
        .collect();
    let family = ClaimFamily::of(&decisive);
    let data: Vec<PointData> = points
        .iter()
        .map(|point| {
            let metric = &loaded.config.claims[point.claim].metric;
            PointData::of(
                analysis,
                metric,
                (point.better, point.than),
                context.code_digest,
            )
        })
        .collect();
    let across: Vec<Vec<AcrossStage<'_>>> = points
        .iter()
        .zip(&data)
        .map(|(point, data)| {
            let claim = &loaded.config.claims[point.claim];
            other_stage_verdicts(context.earlier, &claim.id, analysis.stage)
                .into_iter()
                .map(|other| {
                    pool(
                        data,
                        point.test.method,
                        1.0 - claim.alpha,
                        context.code_digest,
                        other,
                    )
                })
                .collect()
        })
        .collect();
    let pooled_family = ClaimFamily::of(
        &across
            .iter()
            .flatten()
            .map(|a| a.pooled.as_ref().and_then(|p| p.comparison.p_value))
            .collect::<Vec<_>>(),
    );
    let judged = Judged {
        points: &points,
        looked: &looked,
        family: &family,
        look,
        data: &data,
        across: &across,
        pooled_family: &pooled_family,
        earlier: context.earlier,
    };
    loaded
        .config
        .claims
        .iter()
        .enumerate()
        .filter_map(|(index, claim)| {
            let mine: Vec<usize> = (0..points.len())
                .filter(|&i| points[i].claim == index)
                .collect();
            evaluate_one(loaded, analysis, claim, &mine, &judged)
        })
        .collect()
}

/// What every claim test of a stage was judged with.
struct Judged<'a> {
    points: &'a [ClaimPoint<'a>],
    /// Per point, under a two-look design.
    looked: &'a [Option<LookedTest>],
    family: &'a ClaimFamily,
    look: Option<&'a StageLook>,
    /// Per point, its data as evidence records it.
    data: &'a [PointData],
    /// Per point, against each other stage's latest verdict of the claim.
    across: &'a [Vec<AcrossStage<'a>>],
    /// Holm over the pooled tests, in the order of `across` flattened.
    pooled_family: &'a ClaimFamily,
    earlier: &'a [Value],
}

impl Judged<'_> {
    /// The index into `pooled_family` of point `point`'s `k`-th other stage.
    fn pooled_index(&self, point: usize, k: usize) -> usize {
        self.across[..point].iter().map(Vec::len).sum::<usize>() + k
    }
}

/// One test of a declared claim: the claim at one sweep point where both sides ran.
#[derive(Debug, Clone, Copy)]
pub struct ClaimPoint<'a> {
    /// Index into the config's `claims`.
    pub claim: usize,
    pub better: usize,
    pub than: usize,
    pub test: &'a Test,
}

/// Every test the stage's declared claims make, in claim then sweep-point order.
pub fn claim_points<'a>(loaded: &LoadedConfig, analysis: &'a StageAnalysis) -> Vec<ClaimPoint<'a>> {
    let mut points = Vec::new();
    for (index, claim) in loaded.config.claims.iter().enumerate() {
        if !analysis.metrics.contains(&claim.metric) {
            continue;
        }
        for better in analysis.groups_of(&claim.better) {
            let Some(than) = analysis.partner(&claim.than, better) else {
                continue;
            };
            if let Some(test) = analysis.test_between(&claim.metric, better, than) {
                points.push(ClaimPoint {
                    claim: index,
                    better,
                    than,
                    test,
                });
            }
        }
    }
    points
}

/// Holm's family for the verdicts: the declared claims' tests of the stage, and only
/// those (the claims are the hypotheses stated before the data; the summary's other
/// comparisons are exploratory and have their own Holm family in the summary file).
/// A test without a p-value is outside the family.
#[derive(Debug, Clone)]
pub struct ClaimFamily {
    /// Holm-adjusted p-value of each point, in the order of [`claim_points`].
    pub p_holm: Vec<Option<f64>>,
    /// Number of points with a p-value.
    pub size: usize,
}

impl ClaimFamily {
    /// Holm over each point's decisive p-value: its test's, or under a two-look
    /// design its sequential p-value.
    pub fn of(decisive: &[Option<f64>]) -> Self {
        let raw: Vec<f64> = decisive.iter().map(|p| p.unwrap_or(f64::NAN)).collect();
        ClaimFamily {
            p_holm: holm_bonferroni(&raw)
                .into_iter()
                .map(|p| (!p.is_nan()).then_some(p))
                .collect(),
            size: raw.iter().filter(|p| !p.is_nan()).count(),
        }
    }
}

fn evaluate_one(
    loaded: &LoadedConfig,
    analysis: &StageAnalysis,
    claim: &Claim,
    mine: &[usize],
    judged: &Judged<'_>,
) -> Option<ClaimEvaluation> {
    if mine.is_empty() {
        return None;
    }
    let goal = loaded.config.goal_of(&claim.metric);
    let mut evidence = Vec::new();
    let mut statuses = Vec::new();
    let mut sentences = Vec::new();
    for &index in mine {
        let point = evaluate_point(analysis, claim, goal, judged, index);
        sentences.push(point.sentence);
        evidence.push(point.evidence);
        statuses.push(point.status);
    }
    let status = if statuses.contains(&ClaimStatus::Contradicted) {
        ClaimStatus::Contradicted
    } else if statuses.iter().all(|s| *s == ClaimStatus::Supported) {
        ClaimStatus::Supported
    } else {
        ClaimStatus::Inconclusive
    };
    let others = other_stage_verdicts(judged.earlier, &claim.id, analysis.stage);
    let conflicts = conflicts(status.as_str(), &others);
    let mut summary = format!(
        "claim {} ({} better than {} on {}, alpha {}) is {} in the {} stage: {}.",
        claim.id,
        claim.better,
        claim.than,
        claim.metric,
        fmt_num(claim.alpha),
        status.as_str(),
        analysis.stage,
        sentences.join("; ")
    );
    summary.push_str(&conflict_text(status.as_str(), &conflicts));
    Some(ClaimEvaluation {
        claim: claim.clone(),
        status,
        evidence,
        summary,
        sequential: judged.look.map(|look| look.to_json(claim.alpha)),
        conflicts,
    })
}

/// One sweep point of a claim: its verdict, sentence and evidence.
struct PointVerdict {
    status: ClaimStatus,
    sentence: String,
    evidence: Value,
}

/// Judges `claim` at point `index` of the stage's claim tests. The comparison is rerun
/// with the interval at `1 - level` (the stage's is at 95%), `level` the claim's alpha
/// or, under a two-look design, this look's nominal alpha, so the interval in the
/// sentence excludes 0 exactly when the test's p is below that level.
fn evaluate_point(
    analysis: &StageAnalysis,
    claim: &Claim,
    goal: Goal,
    judged: &Judged<'_>,
    index: usize,
) -> PointVerdict {
    let point = &judged.points[index];
    let looked = judged.looked[index].as_ref();
    let (p_holm, family_size) = (judged.family.p_holm[index], judged.family.size);
    let (test, better, than) = (point.test, point.better, point.than);
    let (better_group, than_group) = (&analysis.groups[better], &analysis.groups[than]);
    let (values_better, values_than) = (
        better_group.values(&claim.metric),
        than_group.values(&claim.metric),
    );
    let look = judged.look;
    let level = look
        .and_then(|look| {
            look.design
                .nominal_levels(claim.alpha)
                .map(|l| l[usize::from(look.look) - 1])
        })
        .unwrap_or(claim.alpha);
    // Oriented as better − than, whichever way the stage compared them. The test is
    // the stage's (planned before the data); only the interval's level differs.
    let oriented = compare(values_better, values_than, test.method, 1.0 - level)
        .unwrap_or_else(|_| test.comparison.clone());
    let diff = oriented.mean_diff;
    // A second look that only confirms the first look's rejection keeps the first
    // look's direction: a trial stopped there would have reported it.
    let decisive_diff = match looked {
        Some(looked) if looked.decided_at_first => looked
            .first_look
            .as_ref()
            .map_or(diff, |first| first.mean_diff),
        _ => diff,
    };
    let direction = direction_of(goal, decisive_diff);
    let significant = p_holm.is_some_and(|p| p < claim.alpha);
    let status = match (significant, direction) {
        (true, "as claimed") => ClaimStatus::Supported,
        (true, "against the claim") => ClaimStatus::Contradicted,
        _ => ClaimStatus::Inconclusive,
    };
    // Power at alpha / m, the Bonferroni bound of the Holm step this p must pass (under
    // a design, the second look's nominal level of it): what the seeds can detect
    // under the correction the verdict uses.
    let holm_step = claim.alpha / family_size.max(1) as f64;
    let power_alpha = look
        .and_then(|look| look.design.nominal_levels(holm_step).map(|l| l[1]))
        .unwrap_or(holm_step);
    let power = power_analysis(values_better, values_than, test.method, power_alpha, POWER);
    let power_at_max = look.zip(power.as_ref()).map(|(look, power)| {
        let nobs = f64::from(look.design.max);
        let design = match power.design {
            PowerDesign::Paired => PowerDesign::Paired,
            PowerDesign::TwoSample { .. } => PowerDesign::TwoSample { ratio: 1.0 },
        };
        t_test_power(design, power.observed_effect, nobs, power_alpha)
    });
    let oriented_test = Test {
        a: better,
        b: than,
        comparison: oriented.clone(),
        ..test.clone()
    };
    let unadjusted = match test.p_value {
        Some(p) if p < level && !significant => {
            format!("; p < {} before correction, not after Holm", fmt_num(level))
        }
        _ => String::new(),
    };
    let family = match family_size {
        1 => "1 claim test".to_owned(),
        m => format!("{m} claim tests"),
    };
    let look_words = match (look, looked) {
        (Some(look), Some(looked)) => format!(
            "; {}",
            look_text(look, claim.alpha, looked.p_first, looked.sequential_p)
        ),
        _ => String::new(),
    };
    let mut sentence = format!(
        "{} − {} on {} = {} ({}{look_words}, Holm p = {} over {family}{unadjusted}; {}; {})",
        better_group.stem,
        than_group.stem,
        claim.metric,
        diff.map_or("n/a".to_owned(), fmt_diff),
        test_and_interval(&oriented_test),
        p_holm.map_or("n/a".to_owned(), fmt_p),
        direction,
        sample_text(better_group, than_group, &oriented_test),
    );
    if status == ClaimStatus::Inconclusive {
        let level_words = power_level_text(power_alpha, claim.alpha, family_size, look);
        sentence.push_str(&power_sentence(power.as_ref(), test, diff, &level_words));
        if let Some(look) = look {
            sentence.push_str(&next_look_text(look, analysis.stage.as_str(), power_at_max));
        }
    }
    let mut across = Vec::new();
    for (k, other) in judged.across[index].iter().enumerate() {
        let p_holm = judged.pooled_family.p_holm[judged.pooled_index(index, k)];
        let pooled_status = other.pooled.as_ref().map(|pooled| {
            let significant = p_holm.is_some_and(|p| p < claim.alpha);
            match (significant, direction_of(goal, pooled.comparison.mean_diff)) {
                (true, "as claimed") => ClaimStatus::Supported,
                (true, "against the claim") => ClaimStatus::Contradicted,
                _ => ClaimStatus::Inconclusive,
            }
        });
        sentence.push_str(&across_text(
            other,
            (p_holm, judged.pooled_family.size),
            pooled_status,
        ));
        across.push(across_json(other, p_holm, pooled_status));
    }
    let (better_stats, than_stats) = (&oriented.a, &oriented.b);
    let sequential = look.zip(looked).map(|(look, looked)| {
        json!({
            "look": look.look,
            "nominal_alpha": level,
            "p_first_look": num(looked.p_first),
            "mean_diff_first_look": num(looked.first_look.as_ref().and_then(|c| c.mean_diff).map(|d| if test.a == better { d } else { -d })),
            "sequential_p": num(looked.sequential_p),
            "decided_at_first_look": looked.decided_at_first,
            "power_at_max_seeds": num(power_at_max),
        })
    });
    let evidence = json!({
        "sweep_point": &better_group.sweep_point,
        "better_run": better_group.stem,
        "than_run": than_group.stem,
        "mean_better": num(better_stats.mean),
        "mean_than": num(than_stats.mean),
        "mean_diff": num(diff),
        "mean_diff_ci95": mean_diff_interval(&test_oriented_95(test, better)),
        "interval": interval_json(oriented.interval.as_ref()),
        "direction": direction,
        "test": test.test,
        "planned_test": test.method,
        "planned_test_reason": test.method_reason,
        "p_value": num(test.p_value),
        "p_holm": num(p_holm),
        "family_size": family_size,
        "family": "the declared claims' tests in this stage",
        "hedges_g": num(oriented.hedges_g),
        "cohens_dz": num(oriented.cohens_dz),
        "paired": oriented.paired,
        "n_pairs": oriented.n_pairs,
        "n_better": better_stats.n,
        "n_failed_better": better_stats.n_nan,
        "failed_seeds_better": better_group.failed_seeds(&claim.metric),
        "n_than": than_stats.n,
        "n_failed_than": than_stats.n_nan,
        "failed_seeds_than": than_group.failed_seeds(&claim.metric),
        "power": power,
        "sequential": sequential,
        "data": judged.data[index].to_json(),
        "across_stages": across,
        "status": status,
    });
    PointVerdict {
        status,
        sentence,
        evidence,
    }
}

/// Which way a difference `better − than` points for the metric's goal.
fn direction_of(goal: Goal, diff: Option<f64>) -> &'static str {
    match diff {
        Some(d) if (goal == Goal::Max && d > 0.0) || (goal == Goal::Min && d < 0.0) => "as claimed",
        Some(d) if d != 0.0 => "against the claim",
        _ => "none",
    }
}

/// The stage's 95% comparison, oriented as better − than.
fn test_oriented_95(test: &Test, better: usize) -> Comparison {
    let mut comparison = test.comparison.clone();
    if test.a != better {
        comparison.mean_diff = comparison.mean_diff.map(|d| -d);
        comparison.interval = comparison.interval.map(|interval| Interval {
            estimate: -interval.estimate,
            low: -interval.high,
            high: -interval.low,
            ..interval
        });
    }
    comparison
}

#[cfg(test)]
#[path = "claims_tests.rs"]
pub(crate) mod tests;
