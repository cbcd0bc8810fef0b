//! Cleaning per-seed values and the moments every other module builds on.
//!
//! A failed seed shows up as a non-finite value (NaN, or ±inf from a diverged
//! loss). Every public function drops such values before computing anything
//! and the descriptive summary counts them, so one failed seed never turns a
//! whole summary into NaN. Paired data drops the whole pair.
//!
//! The moments differ from numpy in one deliberate way: a sample whose values
//! are all identical has mean equal to that value and variance exactly 0.
//! numpy's summation can leave a residue there (`np.var([0.1] * 3, ddof=1)` is
//! about 3e-34), which would turn a zero-variance comparison into an
//! astronomically large t statistic instead of scipy's own zero-variance
//! answer (inf or NaN).

/// The finite values of `values`, in order, and how many were dropped.
pub(crate) fn finite_values(values: &[f64]) -> (Vec<f64>, usize) {
    let kept: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let dropped = values.len() - kept.len();
    (kept, dropped)
}

/// The pairs `(a[i], b[i])` where both sides are finite, as two vectors.
/// The caller has checked that the lengths agree.
pub(crate) fn finite_pairs(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .unzip()
}

fn is_constant(values: &[f64]) -> bool {
    values.windows(2).all(|w| w[0] == w[1])
}

/// Arithmetic mean; NaN for an empty slice (numpy's value).
pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if is_constant(values) {
        return values[0];
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample variance with ddof = 1 (two-pass); NaN when fewer than two values,
/// as scipy's `_var` gives for n = 1.
pub(crate) fn variance(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return f64::NAN;
    }
    if is_constant(values) {
        return 0.0;
    }
    let m = mean(values);
    let sum_sq: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    sum_sq / (values.len() - 1) as f64
}

/// Values sorted ascending (all finite, so `total_cmp` is the usual order).
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut out = values.to_vec();
    out.sort_by(f64::total_cmp);
    out
}
