//! One comparison of two methods on one metric, everything a stage summary
//! reports about the pair in one serialisable value.
//!
//! This is the policy layer above the scipy-exact tests. A comparison runs the
//! one test it was planned with ([`TestMethod`]) and reports the interval that
//! test implies, so the interval and the p-value can never tell different
//! stories. A test that is undefined for the data (too few values, zero
//! variance) is reported as `None` with a note saying why, never as NaN/inf,
//! and never replaced by another test: a claim evaluator can tell "no
//! evidence" from "evidence", and nobody can pick the test after the data.

use serde::Serialize;

use crate::descriptive::{describe, Descriptive};
use crate::effect_size::{cohens_d, hedges_g};
use crate::hodges_lehmann::hodges_lehmann_shift;
use crate::mann_whitney::{mann_whitney_u, MannWhitneyResult};
use crate::method::{Interval, IntervalMethod, TestMethod};
use crate::parametric::{paired_t_test, welch_t_test, TTestResult};
use crate::sample::{finite_pairs, finite_values, mean, variance};
use crate::StatsError;

/// Method `a` against method `b` on one metric. Differences are `a - b`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Summaries of all finite values of each method.
    pub a: Descriptive,
    pub b: Descriptive,
    /// The test, fixed before the data.
    pub method: TestMethod,
    pub paired: bool,
    /// Complete pairs (both seeds finite) used by a paired test; `None` when
    /// the test is unpaired.
    pub n_pairs: Option<usize>,
    /// Unpaired: mean(a) - mean(b) over finite values. Paired: the mean of
    /// the differences over complete pairs.
    pub mean_diff: Option<f64>,
    /// The two-sided p-value of `method`, when the test is defined.
    pub p_value: Option<f64>,
    /// The interval `method` implies, at the confidence `compare` was given;
    /// present exactly when `p_value` is.
    pub interval: Option<Interval>,
    /// The result of `method`, in scipy's terms; the other two are `None`.
    pub paired_t: Option<TTestResult>,
    pub welch: Option<TTestResult>,
    pub mann_whitney: Option<MannWhitneyResult>,
    /// Standardised effect sizes of the unpaired values (pooled sd).
    pub cohens_d: Option<f64>,
    pub hedges_g: Option<f64>,
    /// Paired only: mean / sd of the paired differences (Cohen's d_z), the
    /// effect size of the paired t-test and its power.
    pub cohens_dz: Option<f64>,
    /// Why any of the optional fields above is missing.
    pub notes: Vec<String>,
}

/// Compares `a` with `b` by `method`, with the interval at `confidence`.
/// For a paired method `a[i]` and `b[i]` come from the same seed; a length
/// mismatch is then an error, as is a confidence outside (0, 1). Failed seeds
/// (non-finite values) are excluded and counted in the summaries; a paired
/// test drops the whole pair.
pub fn compare(
    a: &[f64],
    b: &[f64],
    method: TestMethod,
    confidence: f64,
) -> Result<Comparison, StatsError> {
    if method.is_paired() && a.len() != b.len() {
        return Err(StatsError::PairedLengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::InvalidConfidence(confidence));
    }
    let (finite_a, _) = finite_values(a);
    let (finite_b, _) = finite_values(b);
    let mut notes = Vec::new();
    let effect_d = cohens_d(&finite_a, &finite_b);
    if finite_a.len() >= 2 && finite_b.len() >= 2 && effect_d.is_none() {
        notes.push("effect size undefined: both methods have zero variance".to_string());
    }
    let mut comparison = Comparison {
        a: describe(a),
        b: describe(b),
        method,
        paired: method.is_paired(),
        n_pairs: None,
        mean_diff: (!finite_a.is_empty() && !finite_b.is_empty())
            .then(|| mean(&finite_a) - mean(&finite_b)),
        p_value: None,
        interval: None,
        paired_t: None,
        welch: None,
        mann_whitney: None,
        cohens_d: effect_d,
        hedges_g: hedges_g(&finite_a, &finite_b),
        cohens_dz: None,
        notes,
    };
    match method {
        TestMethod::PairedT => run_paired_t(&mut comparison, a, b, confidence),
        TestMethod::Welch | TestMethod::MannWhitney => {
            if finite_a.len() < 2 || finite_b.len() < 2 {
                comparison.notes.push(format!(
                    "{} skipped: each method needs at least 2 finite values (n_a = {}, n_b = {})",
                    method.as_str(),
                    finite_a.len(),
                    finite_b.len()
                ));
            } else if method == TestMethod::Welch {
                run_welch(&mut comparison, &finite_a, &finite_b, confidence);
            } else {
                run_mann_whitney(&mut comparison, &finite_a, &finite_b, confidence);
            }
        }
    }
    Ok(comparison)
}

fn run_paired_t(comparison: &mut Comparison, a: &[f64], b: &[f64], confidence: f64) {
    let (pair_a, pair_b) = finite_pairs(a, b);
    let differences: Vec<f64> = pair_a.iter().zip(&pair_b).map(|(x, y)| x - y).collect();
    comparison.n_pairs = Some(differences.len());
    comparison.mean_diff = (!differences.is_empty()).then(|| mean(&differences));
    if differences.len() < 2 {
        comparison.notes.push(format!(
            "paired_t skipped: at least 2 complete pairs needed (have {})",
            differences.len()
        ));
        return;
    }
    let spread = variance(&differences).sqrt();
    comparison.cohens_dz = (spread > 0.0).then(|| mean(&differences) / spread);
    // Equal lengths were checked by `compare`.
    let Ok(result) = paired_t_test(&pair_a, &pair_b) else {
        return;
    };
    keep_t(comparison, result, IntervalMethod::PairedT, confidence);
    comparison.paired_t = comparison.p_value.map(|_| result);
}

fn run_welch(comparison: &mut Comparison, a: &[f64], b: &[f64], confidence: f64) {
    let result = welch_t_test(a, b);
    keep_t(
        comparison,
        result,
        IntervalMethod::WelchSatterthwaite,
        confidence,
    );
    comparison.welch = comparison.p_value.map(|_| result);
}

/// Keeps a t-test whose statistic and p-value are finite, with its interval;
/// otherwise records why. With n >= 2 assured, scipy's inf/NaN only comes
/// from zero variance.
fn keep_t(
    comparison: &mut Comparison,
    result: TTestResult,
    method: IntervalMethod,
    confidence: f64,
) {
    if result.statistic.is_finite() && result.pvalue.is_finite() {
        let (low, high) = result.confidence_interval(confidence);
        comparison.p_value = Some(result.pvalue);
        comparison.interval = Some(Interval {
            method,
            confidence,
            estimate: result.estimate,
            low,
            high,
        });
        return;
    }
    let detail = if result.statistic.is_nan() {
        "and no difference in means"
    } else {
        "but different means (scipy reports t = ±inf, p = 0)"
    };
    comparison.notes.push(format!(
        "{} undefined: zero variance {detail}; no other test is substituted",
        comparison.method.as_str()
    ));
}

fn run_mann_whitney(comparison: &mut Comparison, a: &[f64], b: &[f64], confidence: f64) {
    // Never NaN once both samples are non-empty: with every value tied the
    // normal approximation's z is -inf and the p-value is 1, as in scipy.
    let result = mann_whitney_u(a, b);
    let interval = hodges_lehmann_shift(a, b, confidence);
    if interval.excludes(0.0) != (result.pvalue < 1.0 - confidence) {
        comparison.notes.push(format!(
            "the Hodges–Lehmann interval ends exactly at 0 because a value occurs in both \
             samples, while the test's p-value ({}) says {}; the verdict follows the test",
            result.pvalue,
            if result.pvalue < 1.0 - confidence {
                "it rejects"
            } else {
                "it does not reject"
            }
        ));
    }
    comparison.p_value = Some(result.pvalue);
    comparison.interval = Some(interval);
    comparison.mann_whitney = Some(result);
}
