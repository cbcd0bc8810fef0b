//! Per-method, per-metric summaries of the per-seed values.
//!
//! Undefined quantities are `None` (serialised as JSON `null`) rather than
//! NaN, so a summary file never carries a NaN that a reader must special-case:
//! with no finite value everything is `None`; with one value the mean, min,
//! max and median exist but std, se and the CI do not (ddof = 1 needs n >= 2).

use serde::Serialize;

use crate::distributions::student_t_ppf;
use crate::sample::{finite_values, mean, sorted, variance};

/// Summary of one sample; non-finite inputs are excluded and counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Descriptive {
    /// Number of finite values used.
    pub n: usize,
    /// Number of values excluded as failed seeds (NaN or ±inf).
    pub n_nan: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation, ddof = 1 (numpy `std(ddof=1)`).
    pub std: Option<f64>,
    /// Standard error of the mean, `std / sqrt(n)` (scipy `sem`).
    pub se: Option<f64>,
    /// Two-sided 95% Student-t interval for the mean,
    /// `mean ± t.ppf(0.975, n - 1) * se` (scipy `t.interval`). For a sample
    /// of identical values this is `(mean, mean)`, where scipy's `t.interval`
    /// gives NaN because it rejects a zero scale.
    pub ci95_low: Option<f64>,
    pub ci95_high: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// numpy `median`: the mean of the two middle values for even n.
    pub median: Option<f64>,
}

/// Summarises `values`, excluding NaN and ±inf (failed seeds) and counting
/// them in `n_nan`. Never panics.
pub fn describe(values: &[f64]) -> Descriptive {
    let (finite, n_nan) = finite_values(values);
    let n = finite.len();
    let ordered = sorted(&finite);
    let present = |v: f64| if n == 0 { None } else { Some(v) };
    let mean_value = mean(&finite);
    let (std, se, ci95_low, ci95_high) = if n >= 2 {
        let std = variance(&finite).sqrt();
        let se = std / (n as f64).sqrt();
        let half_width = student_t_ppf(0.975, (n - 1) as f64) * se;
        (
            Some(std),
            Some(se),
            Some(mean_value - half_width),
            Some(mean_value + half_width),
        )
    } else {
        (None, None, None, None)
    };
    Descriptive {
        n,
        n_nan,
        mean: present(mean_value),
        std,
        se,
        ci95_low,
        ci95_high,
        min: ordered.first().copied(),
        max: ordered.last().copied(),
        median: present(percentile_linear(&ordered, 0.5)),
    }
}

/// The `q` quantile (`0 <= q <= 1`) of ascending `sorted_values` by numpy's
/// default `method='linear'`; NaN for an empty slice or `q` outside [0, 1].
///
/// The interpolation mirrors numpy's `_lerp`, which computes from the upper
/// neighbour when the weight is at least one half, so results agree with
/// `np.percentile` to the last bit in the usual cases.
pub fn percentile_linear(sorted_values: &[f64], q: f64) -> f64 {
    if sorted_values.is_empty() || !(0.0..=1.0).contains(&q) {
        return f64::NAN;
    }
    let position = q * (sorted_values.len() - 1) as f64;
    let lower_index = position.floor() as usize;
    let upper_index = (lower_index + 1).min(sorted_values.len() - 1);
    let weight = position - lower_index as f64;
    let lower = sorted_values[lower_index];
    let upper = sorted_values[upper_index];
    let gap = upper - lower;
    if weight >= 0.5 {
        upper - gap * (1.0 - weight)
    } else {
        lower + gap * weight
    }
}
