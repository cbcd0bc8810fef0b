//! Average ranks with tie groups, as scipy's `_rankdata(x, 'average',
//! return_ties=True)` computes them for the rank tests.
//!
//! Ranks are 1-based; tied values share the mean of the ranks they span, so
//! every rank is a multiple of 1/2 and sums of ranks are exact in f64 for any
//! realistic sample size. That exactness is what lets the exact and
//! permutation distributions work on integer "doubled ranks".

use serde::Serialize;

/// Which null distribution produced a rank test's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankTestMethod {
    /// The exact distribution of the statistic (no ties, no zeros).
    Exact,
    /// A complete enumeration of sign flips (scipy's `PermutationMethod`).
    Permutation,
    /// The normal approximation with tie correction.
    Asymptotic,
}

/// Ranks of `values` (in input order) and the sizes of the tie groups.
pub(crate) struct Ranking {
    pub ranks: Vec<f64>,
    /// Size of every group of equal values, including singletons.
    pub tie_groups: Vec<usize>,
}

impl Ranking {
    /// Whether any two values are equal.
    pub fn has_ties(&self) -> bool {
        self.tie_groups.iter().any(|&size| size > 1)
    }

    /// `sum(t^3 - t)` over tie groups, the term both normal approximations
    /// subtract from the variance.
    pub fn tie_term(&self) -> f64 {
        self.tie_groups
            .iter()
            .map(|&size| {
                let t = size as f64;
                t * t * t - t
            })
            .sum()
    }
}

/// Ranks finite `values`.
pub(crate) fn average_ranks(values: &[f64]) -> Ranking {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        // `==` rather than total_cmp so that -0.0 and 0.0 tie, as in numpy.
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        tie_groups.push(end - start);
        start = end;
    }
    Ranking { ranks, tie_groups }
}
