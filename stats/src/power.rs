//! Power of the two-sided t-tests, and what it says about an inconclusive
//! comparison: the smallest effect the current seeds can detect, and the
//! seeds needed to detect the effect observed.
//!
//! The formulas are statsmodels' `TTestPower` (one sample, here the paired
//! differences: df = n - 1, noncentrality d sqrt(n)) and `TTestIndPower`
//! (two independent samples of n1 and n1 * ratio: df = n1 + n2 - 2,
//! noncentrality d sqrt(n1 n2 / (n1 + n2)), d the pooled-sd effect), with
//! statsmodels' two-sided power `sf(crit) + cdf(-crit)` of the noncentral t.
//! They are exact for the paired and the pooled t-test. For Welch's test the
//! pooled formula is the usual planning approximation, and for Mann–Whitney
//! it is the t-test's power, which the rank test reaches to within its
//! asymptotic relative efficiency (0.955 under normality); [`PowerAnalysis`]
//! says which basis it used.

use serde::Serialize;

use crate::distributions::student_t_ppf;
use crate::method::TestMethod;
use crate::noncentral_t::noncentral_t_cdf;
use crate::sample::{finite_pairs, finite_values, mean, variance};

/// The sample design of a power calculation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "design", rename_all = "snake_case")]
pub enum PowerDesign {
    /// One sample of paired differences (`TTestPower`).
    Paired,
    /// Two independent samples, the second `ratio` times the first
    /// (`TTestIndPower`).
    TwoSample { ratio: f64 },
}

/// Two-sided power of the t-test for standardised effect `effect_size` with
/// `nobs` observations (pairs, or the first sample for two samples) at level
/// `alpha`: statsmodels' `TTestPower().power(effect_size, nobs, alpha)` or
/// `TTestIndPower().power(effect_size, nobs, alpha, ratio)`. NaN where
/// statsmodels' is (df <= 0).
pub fn t_test_power(design: PowerDesign, effect_size: f64, nobs: f64, alpha: f64) -> f64 {
    let (df, effective_nobs) = match design {
        PowerDesign::Paired => (nobs - 1.0, nobs),
        PowerDesign::TwoSample { ratio } => {
            let nobs2 = nobs * ratio;
            (nobs + nobs2 - 2.0, 1.0 / (1.0 / nobs + 1.0 / nobs2))
        }
    };
    let critical = student_t_ppf(1.0 - alpha / 2.0, df);
    if critical.is_nan() {
        return f64::NAN;
    }
    let nc = effect_size * effective_nobs.sqrt();
    (1.0 - noncentral_t_cdf(critical, df, nc)) + noncentral_t_cdf(-critical, df, nc)
}

/// The smallest standardised effect (> 0) detected with probability `power`
/// at `nobs` and `alpha` (statsmodels' `solve_power(effect_size=None, …)`).
/// `None` when `power` is not above `alpha` (every effect qualifies) or the
/// design has no degrees of freedom.
pub fn detectable_effect(design: PowerDesign, nobs: f64, alpha: f64, power: f64) -> Option<f64> {
    let power_at = |d: f64| t_test_power(design, d, nobs, alpha);
    if !(power > alpha && power < 1.0) || power_at(0.0).is_nan() {
        return None;
    }
    solve_increasing(power_at, power, 0.0, 1.0)
}

/// The observations (pairs, or the first sample with the second `ratio` times
/// as large) at which the two-sided t-test detects `effect_size` with
/// probability `power` (statsmodels' `solve_power(nobs1=None, …)`), as a
/// real number; at least 2. `None` for a zero or non-finite effect.
pub fn required_nobs(design: PowerDesign, effect_size: f64, alpha: f64, power: f64) -> Option<f64> {
    if !(effect_size.is_finite() && effect_size != 0.0 && power > alpha && power < 1.0) {
        return None;
    }
    let power_at = |n: f64| t_test_power(design, effect_size, n, alpha);
    const SMALLEST: f64 = 2.0;
    if power_at(SMALLEST) >= power {
        return Some(SMALLEST);
    }
    solve_increasing(power_at, power, SMALLEST, 2.0 * SMALLEST)
}

/// The `x >= low` where the increasing `f` reaches `target`: the bracket's
/// upper end doubles from `guess` until it passes the target, then bisection
/// runs down to the last representable digit.
fn solve_increasing(f: impl Fn(f64) -> f64, target: f64, low: f64, guess: f64) -> Option<f64> {
    let (mut low, mut high) = (low, guess);
    while f(high) < target {
        low = high;
        high *= 2.0;
        if high > 1e12 {
            return None;
        }
    }
    for _ in 0..200 {
        let middle = low + (high - low) / 2.0;
        if middle <= low || middle >= high {
            break;
        }
        if f(middle) < target {
            low = middle;
        } else {
            high = middle;
        }
    }
    Some(low + (high - low) / 2.0)
}

/// What power says about one comparison, at a given level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerAnalysis {
    #[serde(flatten)]
    pub design: PowerDesign,
    /// What the figures are exact for: `paired t-test`, or an approximation.
    pub basis: &'static str,
    pub alpha: f64,
    pub target_power: f64,
    /// Complete pairs, or the first sample's size (the second is `ratio` times it).
    pub nobs: f64,
    /// The observed standardised effect: mean / sd of the paired differences
    /// (d_z), or the difference of means over the pooled sd (Cohen's d).
    pub observed_effect: f64,
    /// The sd the effects are standardised by, in the metric's units.
    pub scale: f64,
    /// Power to detect an effect as large as the observed one at `nobs`.
    pub power_at_observed: f64,
    /// The smallest |effect| detectable with `target_power` at `nobs`…
    pub detectable_effect: Option<f64>,
    /// …in the metric's units (`detectable_effect * scale`).
    pub detectable_difference: Option<f64>,
    /// Pairs (or seeds per method, equal sizes) for `target_power` at the
    /// observed effect; `None` when the observed effect is zero.
    pub nobs_needed: Option<f64>,
    /// `nobs_needed` rounded up: the seeds to plan for.
    pub seeds_needed: Option<u64>,
}

/// The power analysis of comparing `a` with `b` by `method` at level `alpha`
/// for `target_power` (usually 0.8). `None` when there is no spread to
/// standardise by (fewer than two values or pairs, or zero variance).
pub fn power_analysis(
    a: &[f64],
    b: &[f64],
    method: TestMethod,
    alpha: f64,
    target_power: f64,
) -> Option<PowerAnalysis> {
    let (design, basis, nobs, difference, scale) = match method {
        TestMethod::PairedT => {
            if a.len() != b.len() {
                return None;
            }
            let (pair_a, pair_b) = finite_pairs(a, b);
            let differences: Vec<f64> = pair_a.iter().zip(&pair_b).map(|(x, y)| x - y).collect();
            if differences.len() < 2 {
                return None;
            }
            let basis = "paired t-test (statsmodels TTestPower on the differences)";
            let nobs = differences.len() as f64;
            let scale = variance(&differences).sqrt();
            (PowerDesign::Paired, basis, nobs, mean(&differences), scale)
        }
        TestMethod::Welch | TestMethod::MannWhitney => {
            let (a, _) = finite_values(a);
            let (b, _) = finite_values(b);
            if a.len() < 2 || b.len() < 2 {
                return None;
            }
            let basis = if method == TestMethod::Welch {
                "pooled two-sample t-test (statsmodels TTestIndPower), the usual approximation for Welch's test"
            } else {
                "pooled two-sample t-test (statsmodels TTestIndPower), an approximation for Mann–Whitney (efficiency 0.955 under normality)"
            };
            let (n1, n2) = (a.len() as f64, b.len() as f64);
            let pooled = ((n1 - 1.0) * variance(&a) + (n2 - 1.0) * variance(&b)) / (n1 + n2 - 2.0);
            let design = PowerDesign::TwoSample { ratio: n2 / n1 };
            (design, basis, n1, mean(&a) - mean(&b), pooled.sqrt())
        }
    };
    if !(scale > 0.0 && scale.is_finite()) {
        return None;
    }
    let observed_effect = difference / scale;
    let detectable = detectable_effect(design, nobs, alpha, target_power);
    let planning = match design {
        PowerDesign::Paired => PowerDesign::Paired,
        PowerDesign::TwoSample { .. } => PowerDesign::TwoSample { ratio: 1.0 },
    };
    let nobs_needed = required_nobs(planning, observed_effect, alpha, target_power);
    Some(PowerAnalysis {
        design,
        basis,
        alpha,
        target_power,
        nobs,
        observed_effect,
        scale,
        power_at_observed: t_test_power(design, observed_effect, nobs, alpha),
        detectable_effect: detectable,
        detectable_difference: detectable.map(|d| d * scale),
        nobs_needed,
        // The solver's last digit must not round 7.000…01 up to 8.
        seeds_needed: nobs_needed.map(|n| (n - 1e-9).ceil() as u64),
    })
}
