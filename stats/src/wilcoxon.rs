//! The Wilcoxon signed-rank test, mirroring `scipy.stats.wilcoxon(a, b)` with
//! its defaults (`zero_method='wilcox'`, `correction=False`, two-sided,
//! `method='auto'`).
//!
//! Zero differences are dropped from the ranking (Wilcox). scipy 1.17 picks
//! the null distribution from the number of differences `n` *including* zeros:
//! - `n > 50`: normal approximation with tie correction;
//! - no ties and no zeros: the exact distribution of the positive rank sum;
//! - otherwise, `n <= 13`: an exact permutation test over all 2^n sign flips
//!   (scipy's `PermutationMethod` enumerates them because 2^13 < 9999);
//! - otherwise: the normal approximation.
//!
//! Edge cases, as scipy answers them: when every difference is zero the
//! statistic is 0 and the p-value is 1 for `n <= 13` (every sign flip gives
//! the same statistic) and NaN above that (the normal approximation divides
//! 0 by 0); with no pairs at all both are NaN.

use serde::Serialize;

use crate::distributions::normal_sf;
use crate::ranks::{average_ranks, RankTestMethod};
use crate::sample::finite_pairs;
use crate::StatsError;

/// A Wilcoxon signed-rank result, as scipy reports it for a two-sided test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WilcoxonResult {
    /// `min(R+, R-)`, the smaller of the rank sums of positive and negative
    /// differences.
    pub statistic: f64,
    /// Two-sided p-value.
    pub pvalue: f64,
    pub method: RankTestMethod,
}

/// Two-sided signed-rank test of the differences `a - b` over the pairs where
/// both values are finite; equals `scipy.stats.wilcoxon(a, b)`.
pub fn wilcoxon_signed_rank(a: &[f64], b: &[f64]) -> Result<WilcoxonResult, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::PairedLengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    let (a, b) = finite_pairs(a, b);
    let differences: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    if differences.is_empty() {
        return Ok(WilcoxonResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
            method: RankTestMethod::Asymptotic,
        });
    }
    let n_zero = differences.iter().filter(|d| **d == 0.0).count();
    let nonzero: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let ranking = average_ranks(&magnitudes);
    let rank_sum_positive: f64 = nonzero
        .iter()
        .zip(&ranking.ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| r)
        .sum();
    let rank_sum_negative: f64 = nonzero
        .iter()
        .zip(&ranking.ranks)
        .filter(|(d, _)| **d < 0.0)
        .map(|(_, r)| r)
        .sum();

    let method = if differences.len() > 50 {
        RankTestMethod::Asymptotic
    } else if !ranking.has_ties() && n_zero == 0 {
        RankTestMethod::Exact
    } else if differences.len() <= 13 {
        RankTestMethod::Permutation
    } else {
        RankTestMethod::Asymptotic
    };
    let pvalue = match method {
        // Without ties and zeros scipy's exact p-value,
        // 2 min(P(T >= r), P(T <= r)), is the same count over sign flips as
        // the permutation test's, so one enumeration serves both.
        RankTestMethod::Exact | RankTestMethod::Permutation => {
            sign_flip_pvalue(&ranking.ranks, rank_sum_positive)
        }
        RankTestMethod::Asymptotic => {
            let count = nonzero.len() as f64;
            let mean = count * (count + 1.0) / 4.0;
            let variance =
                (count * (count + 1.0) * (2.0 * count + 1.0) - ranking.tie_term() / 2.0) / 24.0;
            let z = (rank_sum_positive - mean) / variance.sqrt();
            2.0 * normal_sf(z.abs())
        }
    };
    Ok(WilcoxonResult {
        statistic: rank_sum_positive.min(rank_sum_negative),
        pvalue: pvalue.clamp(0.0, 1.0),
        method,
    })
}

/// Two-sided p-value of the positive rank sum `observed` over all sign
/// assignments of the nonzero differences with the given `ranks`:
/// `2 min(#{T <= observed}, #{T >= observed}) / 2^count`. Zero differences
/// contribute to neither side, so their flips cancel from the ratio.
///
/// Ranks are multiples of 1/2, so the rank sums are counted exactly by a
/// subset-sum table over doubled ranks. That also makes scipy's relative
/// tolerance for "numerically equal" statistics unnecessary.
fn sign_flip_pvalue(ranks: &[f64], observed: f64) -> f64 {
    let doubled: Vec<usize> = ranks.iter().map(|r| (2.0 * r).round() as usize).collect();
    let max_sum: usize = doubled.iter().sum();
    // counts[s]: number of sign assignments whose doubled positive sum is s.
    let mut counts = vec![0.0_f64; max_sum + 1];
    counts[0] = 1.0;
    for &weight in &doubled {
        for s in (weight..=max_sum).rev() {
            counts[s] += counts[s - weight];
        }
    }
    let observed_doubled = (2.0 * observed).round() as usize;
    let at_most: f64 = counts[..=observed_doubled].iter().sum();
    let at_least: f64 = counts[observed_doubled..].iter().sum();
    let total = 2.0_f64.powi(doubled.len() as i32);
    2.0 * at_most.min(at_least) / total
}
