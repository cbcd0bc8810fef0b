//! The Mann–Whitney U test, mirroring `scipy.stats.mannwhitneyu(x, y)` with
//! its defaults (two-sided, `use_continuity=True`, `method='auto'`).
//!
//! scipy 1.17's `_mwu_choose_method`: the asymptotic normal approximation
//! when both samples have more than 8 values or when there is any tie in the
//! pooled sample; otherwise the exact null distribution of U.

use serde::Serialize;

use crate::distributions::normal_sf;
use crate::ranks::{average_ranks, RankTestMethod};
use crate::sample::finite_values;

/// A Mann–Whitney U result, as scipy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitneyResult {
    /// U of the first sample: `R1 - n1 (n1 + 1) / 2`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub pvalue: f64,
    pub method: RankTestMethod,
}

/// Two-sided Mann–Whitney U test of `a` against `b` on their finite values;
/// equals `scipy.stats.mannwhitneyu(a, b)`. scipy rejects empty samples; here
/// an empty sample gives NaN statistic and p-value (asymptotic).
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> MannWhitneyResult {
    let (a, _) = finite_values(a);
    let (b, _) = finite_values(b);
    if a.is_empty() || b.is_empty() {
        return MannWhitneyResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
            method: RankTestMethod::Asymptotic,
        };
    }
    let (n1, n2) = (a.len(), b.len());
    let pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    let ranking = average_ranks(&pooled);
    let rank_sum_a: f64 = ranking.ranks[..n1].iter().sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    // Two-sided: the survival function at the larger U, doubled.
    let u = u1.max(u2);
    let both_large = n1 > 8 && n2 > 8;
    let exact = !both_large && !ranking.has_ties();
    let (pvalue, method) = if exact {
        // Without ties U is an integer; P(U >= u) = P(U <= n1 n2 - u).
        let lower = (n1f * n2f - u).round() as usize;
        (2.0 * exact_cdf(n1, n2, lower), RankTestMethod::Exact)
    } else {
        let n = n1f + n2f;
        let mu = n1f * n2f / 2.0;
        let sd = (n1f * n2f / 12.0 * ((n + 1.0) - ranking.tie_term() / (n * (n - 1.0)))).sqrt();
        // The continuity correction always subtracts 1/2, as scipy does,
        // because the p-value always comes from the upper tail at max(U1, U2).
        let z = (u - mu - 0.5) / sd;
        (2.0 * normal_sf(z), RankTestMethod::Asymptotic)
    };
    MannWhitneyResult {
        statistic: u1,
        pvalue: pvalue.clamp(0.0, 1.0),
        method,
    }
}

/// P(U <= k) under the null for samples of sizes `n1` and `n2`, no ties.
///
/// The number of arrangements with U = u is the coefficient of q^u in the
/// Gaussian binomial [n1 + n2 choose m]_q with m = min(n1, n2). It is built
/// as the product over i = 1..m of (1 - q^(n + i)) / (1 - q^i), n = max(n1, n2),
/// truncated at q^k: each division is a running sum and each multiplication a
/// single subtraction, so the cost is O(m k). Counts are exact integers in f64
/// while they stay below 2^53 (e.g. up to n = 1500 for m = 8).
fn exact_cdf(n1: usize, n2: usize, k: usize) -> f64 {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let mut counts = vec![0.0; k + 1];
    counts[0] = 1.0;
    for i in 1..=m {
        for u in i..=k {
            counts[u] += counts[u - i];
        }
        for u in (n + i..=k).rev() {
            counts[u] -= counts[u - n - i];
        }
        // The product after step i has degree i * n; zero anything above it
        // so rounding residue cannot leak into later steps.
        for count in counts.iter_mut().skip(i * n + 1) {
            *count = 0.0;
        }
    }
    let total = binomial(n1 + n2, m);
    counts.iter().sum::<f64>() / total
}

/// C(n, k) in f64, exact while it fits in 53 bits.
fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}
