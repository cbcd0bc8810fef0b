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
    let null = UNull::of(&a, &b);
    let u1 = null.u1;
    // Two-sided: the survival function at the larger U, doubled.
    let u = u1.max(null.mn() - u1);
    MannWhitneyResult {
        statistic: u1,
        pvalue: null.pvalue(u),
        method: null.method,
    }
}

/// The null distribution scipy uses for U on given samples, and the observed U1.
pub(crate) struct UNull {
    n1: usize,
    n2: usize,
    pub method: RankTestMethod,
    /// Standard deviation of U, tie-corrected (asymptotic method only).
    sd: f64,
    /// U of the first sample: `R1 - n1 (n1 + 1) / 2`.
    pub u1: f64,
}

impl UNull {
    /// scipy 1.17's `_mwu_choose_method` on the finite, non-empty `a` and `b`.
    pub(crate) fn of(a: &[f64], b: &[f64]) -> UNull {
        let (n1, n2) = (a.len(), b.len());
        let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
        let ranking = average_ranks(&pooled);
        let rank_sum_a: f64 = ranking.ranks[..n1].iter().sum();
        let (n1f, n2f) = (n1 as f64, n2 as f64);
        let both_large = n1 > 8 && n2 > 8;
        let exact = !both_large && !ranking.has_ties();
        let n = n1f + n2f;
        UNull {
            n1,
            n2,
            method: if exact {
                RankTestMethod::Exact
            } else {
                RankTestMethod::Asymptotic
            },
            sd: (n1f * n2f / 12.0 * ((n + 1.0) - ranking.tie_term() / (n * (n - 1.0)))).sqrt(),
            u1: rank_sum_a - n1f * (n1f + 1.0) / 2.0,
        }
    }

    pub(crate) fn mn(&self) -> f64 {
        (self.n1 * self.n2) as f64
    }

    /// The two-sided p-value when the larger of U1 and U2 is `u_max`.
    pub(crate) fn pvalue(&self, u_max: f64) -> f64 {
        let p = match self.method {
            // Without ties U is an integer; P(U >= u) = P(U <= n1 n2 - u).
            RankTestMethod::Exact | RankTestMethod::Permutation => {
                let lower = (self.mn() - u_max).round() as usize;
                2.0 * exact_cdf(self.n1, self.n2, lower)
            }
            RankTestMethod::Asymptotic => {
                // The continuity correction always subtracts 1/2, as scipy
                // does, because the p-value always comes from the upper tail
                // at max(U1, U2).
                let z = (u_max - self.mn() / 2.0 - 0.5) / self.sd;
                2.0 * normal_sf(z)
            }
        };
        p.clamp(0.0, 1.0)
    }

    /// The number `k` of counts `j = 0, 1, …` for which a smaller U of `j`
    /// (larger U of `n1 n2 - j`) gives a p-value below `alpha`: the test
    /// rejects exactly when min(U1, U2) <= k - 1. The p-value grows with `j`,
    /// so `k` is found by bisection with the very function that reports it.
    pub(crate) fn critical_count(&self, alpha: f64) -> usize {
        let rejects = |j: usize| self.pvalue(self.mn() - j as f64) < alpha;
        let (mut low, mut high) = (0, self.n1 * self.n2 / 2 + 1);
        // Invariant: rejects(j) for every j < low, not for any j >= high.
        while low < high {
            let middle = (low + high) / 2;
            if rejects(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
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
