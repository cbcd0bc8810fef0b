//! The noncentral t distribution's CDF, which the t-tests' power needs.
//!
//! Lenth's algorithm AS 243 (Applied Statistics 38, 1989): for t >= 0,
//! `F(t) = Φ(-δ) + ½ Σ_j [p_j I_x(j + ½, ν/2) + q_j I_x(j + 1, ν/2)]` with
//! `x = t² / (t² + ν)`, Poisson weights `p_j = e^(-λ) λ^j / j!` and
//! `q_j = δ e^(-λ) λ^j / (√2 Γ(j + 3/2))`, `λ = δ²/2`; for t < 0,
//! `F(t; ν, δ) = 1 - F(-t; ν, -δ)`. The weights are computed in log space, so a
//! large noncentrality does not underflow, and terms too small to matter are
//! skipped without evaluating their incomplete beta function.

use statrs::function::beta::checked_beta_reg;
use statrs::function::gamma::ln_gamma;

use crate::distributions::{normal_sf, student_t_sf};

/// Terms below this (relative to a CDF in [0, 1]) are left out.
const NEGLIGIBLE: f64 = 1e-20;
/// A guard against a runaway series; the weights fall off long before.
const MAX_TERMS: usize = 1_000_000;

/// P(T <= t) for the noncentral t with `df` degrees of freedom and
/// noncentrality `nc` (scipy's `special.nctdtr(df, nc, t)`). NaN for NaN
/// arguments or `df <= 0`.
pub(crate) fn noncentral_t_cdf(t: f64, df: f64, nc: f64) -> f64 {
    if t.is_nan() || df.is_nan() || nc.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t == f64::INFINITY {
        return 1.0;
    }
    if t == f64::NEG_INFINITY {
        return 0.0;
    }
    if nc == 0.0 {
        return 1.0 - student_t_sf(t, df);
    }
    if t < 0.0 {
        return 1.0 - upper_branch(-t, df, -nc);
    }
    upper_branch(t, df, nc)
}

/// AS 243 for t >= 0 and any finite, nonzero `nc`.
fn upper_branch(t: f64, df: f64, nc: f64) -> f64 {
    let x = t * t / (t * t + df);
    let lambda = nc * nc / 2.0;
    let log_lambda = lambda.ln();
    let log_nc_over_sqrt2 = nc.abs().ln() - std::f64::consts::LN_2 / 2.0;
    let mut sum = 0.0;
    for j in 0..MAX_TERMS {
        let jf = j as f64;
        let log_poisson = -lambda + jf * log_lambda;
        let p = (log_poisson - ln_gamma(jf + 1.0)).exp();
        let q = nc.signum() * (log_poisson + log_nc_over_sqrt2 - ln_gamma(jf + 1.5)).exp();
        let weight = p + q.abs();
        if weight >= NEGLIGIBLE {
            let incomplete = |a: f64| checked_beta_reg(a, df / 2.0, x).unwrap_or(f64::NAN);
            let term = if x == 0.0 {
                0.0
            } else {
                p * incomplete(jf + 0.5) + q * incomplete(jf + 1.0)
            };
            sum += term;
        }
        // Past the mode the weights shrink by λ / (j + 1) per step, so what is
        // left is at most weight / (1 - λ / (j + 1)).
        if jf > lambda && weight * (jf + 1.0) / (jf + 1.0 - lambda) < NEGLIGIBLE {
            break;
        }
    }
    (normal_sf(nc) + 0.5 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no noncentrality it is Student's t.
    #[test]
    fn central_case_is_students_t() {
        for (t, df) in [(0.3, 2.0), (-1.7, 5.5), (2.2, 30.0)] {
            let expected = 1.0 - student_t_sf(t, df);
            assert!((noncentral_t_cdf(t, df, 0.0) - expected).abs() < 1e-15);
            // A vanishing noncentrality takes the series path to the same value.
            assert!((noncentral_t_cdf(t, df, 1e-9) - expected).abs() < 1e-8);
        }
    }

    /// At t = 0 the CDF is Φ(-δ) for any df.
    #[test]
    fn at_zero_it_is_the_normal_tail() {
        for nc in [-3.0, -0.5, 0.7, 4.0, 30.0] {
            let value = noncentral_t_cdf(0.0, 7.0, nc);
            assert!((value - normal_sf(nc)).abs() < 1e-15, "nc {nc}: {value}");
        }
    }

    /// Far left of a large noncentrality the CDF is 1 minus a sum within
    /// rounding of 1, so it is only good to an absolute 1e-13 there: ample
    /// for power, which needs 1e-6.
    #[test]
    fn monotone_and_bounded_even_for_large_noncentrality() {
        let mut previous = 0.0;
        for i in -40..=80 {
            let t = f64::from(i);
            let value = noncentral_t_cdf(t, 3.0, 40.0);
            assert!((0.0..=1.0).contains(&value) && value >= previous - 1e-13);
            previous = value;
        }
        assert!(noncentral_t_cdf(f64::NAN, 3.0, 1.0).is_nan());
        assert!(noncentral_t_cdf(1.0, 0.0, 1.0).is_nan());
    }
}
