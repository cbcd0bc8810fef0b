//! Claims (`config.yaml` `claims:`) judged against a finished stage's statistics.
//!
//! A claim "`better` beats `than` on `metric`" is evaluated in every stage where both
//! sides ran, at every sweep point where both ran, on the stage's comparison of the
//! two (see [`crate::summary::analysis`]), with the Holm-adjusted p-value of the
//! stage's family. The rules, per sweep point:
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

use crate::summary::analysis::StageAnalysis;
use crate::summary::render::num;
use crate::summary::text::{fmt_diff, fmt_num, fmt_p};
use expcluster_core::config::{Claim, Goal, LoadedConfig};
use serde::Serialize;
use serde_json::{json, Value};

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
            "rule": "supported/contradicted: Holm-adjusted p < alpha with the difference for/against the claim; inconclusive otherwise",
            "evidence": self.evidence,
            "summary": self.summary,
        })
    }
}

/// Evaluates every claim whose two sides ran in the stage and whose metric it produced.
pub fn evaluate(loaded: &LoadedConfig, analysis: &StageAnalysis) -> Vec<ClaimEvaluation> {
    loaded
        .config
        .claims
        .iter()
        .filter_map(|claim| evaluate_one(loaded, analysis, claim))
        .collect()
}

fn evaluate_one(
    loaded: &LoadedConfig,
    analysis: &StageAnalysis,
    claim: &Claim,
) -> Option<ClaimEvaluation> {
    if !analysis.metrics.contains(&claim.metric) {
        return None;
    }
    let goal = loaded.config.goal_of(&claim.metric);
    let mut evidence = Vec::new();
    let mut statuses = Vec::new();
    let mut sentences = Vec::new();
    for better in analysis.groups_of(&claim.better) {
        let Some(than) = analysis.partner(&claim.than, better) else {
            continue;
        };
        let Some(test) = analysis.test_between(&claim.metric, better, than) else {
            continue;
        };
        let c = &test.comparison;
        // Oriented as better − than whichever way the stage compared them.
        let sign = if test.a == better { 1.0 } else { -1.0 };
        let (better_stats, than_stats) = if test.a == better {
            (&c.a, &c.b)
        } else {
            (&c.b, &c.a)
        };
        let diff = c.mean_diff.map(|d| d * sign);
        let (low, high) = match (c.mean_diff_ci_low, c.mean_diff_ci_high) {
            (Some(l), Some(h)) if sign > 0.0 => (Some(l), Some(h)),
            (Some(l), Some(h)) => (Some(-h), Some(-l)),
            _ => (None, None),
        };
        let direction = match diff {
            Some(d) if (goal == Goal::Max && d > 0.0) || (goal == Goal::Min && d < 0.0) => {
                "as claimed"
            }
            Some(d) if d != 0.0 => "against the claim",
            _ => "none",
        };
        let significant = test.p_holm.is_some_and(|p| p < claim.alpha);
        let status = match (significant, direction) {
            (true, "as claimed") => ClaimStatus::Supported,
            (true, "against the claim") => ClaimStatus::Contradicted,
            _ => ClaimStatus::Inconclusive,
        };
        let point = &analysis.groups[better].sweep_point;
        sentences.push(format!(
            "{} − {} on {} = {}{} ({}, {} p = {}, Holm p = {}; n = {} with {} failed vs n = {} with {} failed)",
            analysis.groups[better].stem,
            analysis.groups[than].stem,
            claim.metric,
            diff.map_or("n/a".to_owned(), fmt_diff),
            match (low, high) {
                (Some(l), Some(h)) => format!(" [95% CI {}, {}]", fmt_diff(l), fmt_diff(h)),
                _ => String::new(),
            },
            direction,
            test.test.unwrap_or("no test"),
            test.p_value.map_or("n/a".to_owned(), fmt_p),
            test.p_holm.map_or("n/a".to_owned(), fmt_p),
            better_stats.n,
            better_stats.n_nan,
            than_stats.n,
            than_stats.n_nan,
        ));
        evidence.push(json!({
            "sweep_point": point,
            "better_run": analysis.groups[better].stem,
            "than_run": analysis.groups[than].stem,
            "mean_better": num(better_stats.mean),
            "mean_than": num(than_stats.mean),
            "mean_diff": num(diff),
            "mean_diff_ci95": match (low, high) { (Some(_), Some(_)) => json!([num(low), num(high)]), _ => Value::Null },
            "direction": direction,
            "test": test.test,
            "p_value": num(test.p_value),
            "p_holm": num(test.p_holm),
            "hedges_g": num(c.hedges_g.map(|g| g * sign)),
            "paired": c.paired,
            "n_better": better_stats.n,
            "n_failed_better": better_stats.n_nan,
            "n_than": than_stats.n,
            "n_failed_than": than_stats.n_nan,
            "status": status,
        }));
        statuses.push(status);
    }
    if statuses.is_empty() {
        return None;
    }
    let status = if statuses.contains(&ClaimStatus::Contradicted) {
        ClaimStatus::Contradicted
    } else if statuses.iter().all(|s| *s == ClaimStatus::Supported) {
        ClaimStatus::Supported
    } else {
        ClaimStatus::Inconclusive
    };
    let summary = format!(
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
    Some(ClaimEvaluation {
        claim: claim.clone(),
        status,
        evidence,
        summary,
    })
}
