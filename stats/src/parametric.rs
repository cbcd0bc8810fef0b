//! Welch's and the paired t-test, mirroring scipy's `ttest_ind(equal_var=False)`
//! and `ttest_rel` value for value, including their degenerate cases.
//!
//! scipy's answers at the edges, reproduced here on purpose:
//! - fewer than two values in a sample: the variance is NaN, so statistic and
//!   p-value are NaN; Welch's df then falls back to 1 (scipy replaces a NaN df
//!   by 1), the paired df stays `n - 1`; an empty sample gives NaN throughout;
//! - zero variance (both samples for Welch, the differences for the paired
//!   test): the statistic is ±inf with p = 0 when the means differ, NaN with
//!   p = NaN when they do not; Welch's df is 1 there too.

use serde::Serialize;

use crate::distributions::{student_t_ppf, student_t_two_sided};
use crate::sample::{finite_pairs, finite_values, mean, variance};
use crate::StatsError;

/// A t-test result; fields are scipy's `statistic`, `pvalue`, `df` and the
/// private `_estimate` and `_standard_error` behind its `confidence_interval()`,
/// and may be NaN or ±inf exactly where scipy's are (serialised as JSON `null`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TTestResult {
    pub statistic: f64,
    /// Two-sided p-value.
    pub pvalue: f64,
    pub df: f64,
    /// The difference the test is about: mean(a) - mean(b) (Welch) or the
    /// mean of the paired differences.
    pub estimate: f64,
    /// The standard error of `estimate`; `statistic = estimate / standard_error`.
    pub standard_error: f64,
}

impl TTestResult {
    const UNDEFINED: TTestResult = TTestResult {
        statistic: f64::NAN,
        pvalue: f64::NAN,
        df: f64::NAN,
        estimate: f64::NAN,
        standard_error: f64::NAN,
    };

    /// The two-sided interval of `estimate` implied by this test, scipy's
    /// `TtestResult.confidence_interval(confidence)`:
    /// `estimate + t.ppf((1 ± confidence) / 2, df) * standard_error`.
    ///
    /// It is the set of differences the test would not reject at
    /// `1 - confidence`, so it excludes 0 exactly when `pvalue < 1 - confidence`
    /// (up to rounding at the boundary itself). With zero variance it is the
    /// point `(estimate, estimate)`: it excludes 0 exactly when the means
    /// differ, which is when scipy's p-value is 0.
    pub fn confidence_interval(&self, confidence: f64) -> (f64, f64) {
        let tail = (1.0 - confidence) / 2.0;
        // t.ppf(tail) = -t.ppf(1 - tail): one quantile serves both ends.
        let critical = student_t_ppf(1.0 - tail, self.df);
        let half_width = critical * self.standard_error;
        (self.estimate - half_width, self.estimate + half_width)
    }
}

/// Welch's unequal-variance t-test of mean(a) - mean(b); equals
/// `scipy.stats.ttest_ind(a, b, equal_var=False)` on the finite values.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> TTestResult {
    let (a, _) = finite_values(a);
    let (b, _) = finite_values(b);
    if a.is_empty() || b.is_empty() {
        return TTestResult::UNDEFINED;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let vn1 = variance(&a) / n1;
    let vn2 = variance(&b) / n2;
    let df = (vn1 + vn2).powi(2) / (vn1 * vn1 / (n1 - 1.0) + vn2 * vn2 / (n2 - 1.0));
    // scipy: "if df is undefined, variances are zero ... it doesn't matter
    // what df is as long as it's not NaN".
    let df = if df.is_nan() { 1.0 } else { df };
    let estimate = mean(&a) - mean(&b);
    let standard_error = (vn1 + vn2).sqrt();
    let statistic = estimate / standard_error;
    TTestResult {
        statistic,
        pvalue: student_t_two_sided(statistic, df),
        df,
        estimate,
        standard_error,
    }
}

/// Paired t-test of mean(a - b); equals `scipy.stats.ttest_rel(a, b)` on the
/// pairs where both values are finite.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTestResult, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::PairedLengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    let (a, b) = finite_pairs(a, b);
    if a.is_empty() {
        return Ok(TTestResult::UNDEFINED);
    }
    let differences: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let n = differences.len() as f64;
    let df = n - 1.0;
    let estimate = mean(&differences);
    let standard_error = (variance(&differences) / n).sqrt();
    let statistic = estimate / standard_error;
    Ok(TTestResult {
        statistic,
        pvalue: student_t_two_sided(statistic, df),
        df,
        estimate,
        standard_error,
    })
}
