//! One comparison of two methods on one metric, everything a stage summary
//! reports about the pair in one serialisable value.
//!
//! This is the policy layer above the scipy-exact tests: a test that is
//! undefined for the data (too few values, zero variance, all differences
//! zero) is reported as `None` with a note saying why, never as NaN/inf, so a
//! claim evaluator can tell "no evidence" from "evidence".

use serde::Serialize;

use crate::bootstrap::{bootstrap_mean_diff_ci, bootstrap_paired_mean_diff_ci};
use crate::descriptive::{describe, Descriptive};
use crate::effect_size::{cohens_d, hedges_g};
use crate::mann_whitney::{mann_whitney_u, MannWhitneyResult};
use crate::parametric::{paired_t_test, welch_t_test, TTestResult};
use crate::sample::{finite_pairs, finite_values, mean};
use crate::wilcoxon::{wilcoxon_signed_rank, WilcoxonResult};
use crate::StatsError;

/// Resamples behind the bootstrap interval of [`compare`].
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Confidence level of the bootstrap interval of [`compare`].
pub const BOOTSTRAP_CONFIDENCE: f64 = 0.95;

/// Method `a` against method `b` on one metric. Differences are `a - b`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Summaries of all finite values of each method.
    pub a: Descriptive,
    pub b: Descriptive,
    pub paired: bool,
    /// Complete pairs (both seeds finite) used by the paired statistics;
    /// `None` when not paired.
    pub n_pairs: Option<usize>,
    /// Unpaired: mean(a) - mean(b) over finite values. Paired: the mean of
    /// the differences over complete pairs.
    pub mean_diff: Option<f64>,
    /// Percentile bootstrap interval of `mean_diff` (pairs resampled whole
    /// when paired), at [`BOOTSTRAP_CONFIDENCE`].
    pub mean_diff_ci_low: Option<f64>,
    pub mean_diff_ci_high: Option<f64>,
    pub ci_confidence: f64,
    pub welch: Option<TTestResult>,
    pub mann_whitney: Option<MannWhitneyResult>,
    /// Present only for paired data.
    pub paired_t: Option<TTestResult>,
    /// Present only for paired data.
    pub wilcoxon: Option<WilcoxonResult>,
    /// Effect sizes on the same values as `mean_diff`.
    pub cohens_d: Option<f64>,
    pub hedges_g: Option<f64>,
    /// Why any of the optional fields above is missing.
    pub notes: Vec<String>,
}

/// Compares `a` with `b`. `paired` means `a[i]` and `b[i]` come from the same
/// seed; the only error is a length mismatch then. Failed seeds (non-finite
/// values) are excluded and counted in the summaries.
///
/// The unpaired statistics (Welch, Mann–Whitney, effect sizes) use every
/// finite value of each method; the paired ones (paired t, Wilcoxon, and in
/// paired mode the mean difference and its interval) use the complete pairs.
pub fn compare(a: &[f64], b: &[f64], paired: bool, seed: u64) -> Result<Comparison, StatsError> {
    if paired && a.len() != b.len() {
        return Err(StatsError::PairedLengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    let mut notes = Vec::new();
    let (finite_a, _) = finite_values(a);
    let (finite_b, _) = finite_values(b);

    let unpaired_ok = finite_a.len() >= 2 && finite_b.len() >= 2;
    if !unpaired_ok {
        notes.push(format!(
            "unpaired tests skipped: each method needs at least 2 finite values \
             (n_a = {}, n_b = {})",
            finite_a.len(),
            finite_b.len()
        ));
    }
    let welch = unpaired_ok
        .then(|| welch_t_test(&finite_a, &finite_b))
        .and_then(|result| keep_t("welch t-test", result, &mut notes));
    // Never NaN once both samples are non-empty: with every value tied the
    // normal approximation's z is -inf and the p-value is 1, as in scipy.
    let mann_whitney = unpaired_ok.then(|| mann_whitney_u(&finite_a, &finite_b));
    let effect_d = cohens_d(&finite_a, &finite_b);
    let effect_g = hedges_g(&finite_a, &finite_b);
    if unpaired_ok && effect_d.is_none() {
        notes.push("effect size undefined: both methods have zero variance".to_string());
    }

    let difference = if paired {
        paired_difference(a, b, seed, &mut notes)?
    } else {
        unpaired_difference(a, b, &finite_a, &finite_b, seed)?
    };

    Ok(Comparison {
        a: describe(a),
        b: describe(b),
        paired,
        n_pairs: difference.n_pairs,
        mean_diff: difference.mean_diff,
        mean_diff_ci_low: difference.interval.map(|(low, _)| low),
        mean_diff_ci_high: difference.interval.map(|(_, high)| high),
        ci_confidence: BOOTSTRAP_CONFIDENCE,
        welch,
        mann_whitney,
        paired_t: difference.paired_t,
        wilcoxon: difference.wilcoxon,
        cohens_d: effect_d,
        hedges_g: effect_g,
        notes,
    })
}

/// The mean difference, its interval and the paired tests.
#[derive(Default)]
struct Difference {
    n_pairs: Option<usize>,
    mean_diff: Option<f64>,
    interval: Option<(f64, f64)>,
    paired_t: Option<TTestResult>,
    wilcoxon: Option<WilcoxonResult>,
}

fn unpaired_difference(
    a: &[f64],
    b: &[f64],
    finite_a: &[f64],
    finite_b: &[f64],
    seed: u64,
) -> Result<Difference, StatsError> {
    let mean_diff =
        (!finite_a.is_empty() && !finite_b.is_empty()).then(|| mean(finite_a) - mean(finite_b));
    // A one-value sample resamples to itself: no interval worth reporting.
    let interval = if finite_a.len() >= 2 && finite_b.len() >= 2 {
        Some(bootstrap_mean_diff_ci(
            a,
            b,
            BOOTSTRAP_RESAMPLES,
            BOOTSTRAP_CONFIDENCE,
            seed,
        )?)
    } else {
        None
    };
    Ok(Difference {
        mean_diff,
        interval,
        ..Difference::default()
    })
}

fn paired_difference(
    a: &[f64],
    b: &[f64],
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<Difference, StatsError> {
    let (pair_a, pair_b) = finite_pairs(a, b);
    let differences: Vec<f64> = pair_a.iter().zip(&pair_b).map(|(x, y)| x - y).collect();
    let partial = Difference {
        n_pairs: Some(differences.len()),
        mean_diff: (!differences.is_empty()).then(|| mean(&differences)),
        ..Difference::default()
    };
    if differences.len() < 2 {
        notes.push(format!(
            "paired tests skipped: at least 2 complete pairs needed (have {})",
            differences.len()
        ));
        return Ok(partial);
    }
    let interval =
        bootstrap_paired_mean_diff_ci(a, b, BOOTSTRAP_RESAMPLES, BOOTSTRAP_CONFIDENCE, seed)?;
    let paired_t = keep_t("paired t-test", paired_t_test(a, b)?, notes);
    let wilcoxon = wilcoxon_signed_rank(a, b)?;
    let wilcoxon = if wilcoxon.pvalue.is_finite() {
        Some(wilcoxon)
    } else {
        notes.push("wilcoxon signed-rank undefined: every difference is zero".to_string());
        None
    };
    Ok(Difference {
        interval: Some(interval),
        paired_t,
        wilcoxon,
        ..partial
    })
}

/// Keeps a t-test whose statistic and p-value are finite; otherwise records
/// why. With n >= 2 assured, scipy's inf/NaN only comes from zero variance.
fn keep_t(name: &str, result: TTestResult, notes: &mut Vec<String>) -> Option<TTestResult> {
    if result.statistic.is_finite() && result.pvalue.is_finite() {
        return Some(result);
    }
    let detail = if result.statistic.is_nan() {
        "and no difference in means"
    } else {
        "but different means (scipy reports t = ±inf, p = 0)"
    };
    notes.push(format!("{name} undefined: zero variance {detail}"));
    None
}
