//! The Hodges–Lehmann shift and the interval the Mann–Whitney test implies.
//!
//! Shifting `a` by δ changes U1 to #{a_i - b_j > δ} (plus 1/2 per tie), so the
//! shifts the test does not reject are bounded by order statistics of the
//! n1 n2 pairwise differences D = a_i - b_j. With `k` the number of counts
//! min(U1, U2) at which the test rejects ([`UNull::critical_count`]), the
//! interval is `[D_(k), D_(n1 n2 + 1 - k)]` (1-based, ascending) and the
//! estimate is the median of D (Hollander & Wolfe, *Nonparametric Statistical
//! Methods*, §4.3).
//!
//! `k` comes from the same p-value function the test reports (exact or
//! normal, with scipy's tie correction and continuity correction), so the
//! interval excludes 0 exactly when the p-value is below `1 - confidence`
//! whenever no value occurs in both samples. When one does, a difference is
//! exactly 0 and U counts it as a half; the interval can then end exactly at 0
//! while the test rejects, which [`crate::compare`] reports in a note.

use crate::mann_whitney::UNull;
use crate::method::{Interval, IntervalMethod};
use crate::ranks::RankTestMethod;

/// The Hodges–Lehmann estimate of the shift of `a` over `b` with its interval
/// at `confidence`, on finite, non-empty samples. With samples too small for
/// the test ever to reject, the interval is unbounded (±inf).
pub(crate) fn hodges_lehmann_shift(a: &[f64], b: &[f64], confidence: f64) -> Interval {
    let null = UNull::of(a, b);
    let mut differences: Vec<f64> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| x - y))
        .collect();
    differences.sort_by(f64::total_cmp);
    let count = differences.len();
    let estimate = if count % 2 == 1 {
        differences[count / 2]
    } else {
        (differences[count / 2 - 1] + differences[count / 2]) / 2.0
    };
    let k = null.critical_count(1.0 - confidence);
    let (low, high) = if k == 0 {
        (f64::NEG_INFINITY, f64::INFINITY)
    } else {
        (differences[k - 1], differences[count - k])
    };
    Interval {
        method: match null.method {
            RankTestMethod::Exact | RankTestMethod::Permutation => {
                IntervalMethod::HodgesLehmannExact
            }
            RankTestMethod::Asymptotic => IntervalMethod::HodgesLehmannNormal,
        },
        confidence,
        estimate,
        low,
        high,
    }
}
