//! Percentile bootstrap intervals for a difference of means.
//!
//! The generator is ChaCha8 seeded from a `u64`, so an interval is a pure
//! function of (data, n_resamples, confidence, seed) on every platform: a
//! stage summary recomputed later prints the same numbers. The interval ends
//! are numpy's linear-interpolation percentiles of the resampled differences
//! (the `percentile` method of `scipy.stats.bootstrap`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::descriptive::percentile_linear;
use crate::sample::{finite_pairs, finite_values};
use crate::StatsError;

/// Percentile bootstrap interval `(low, high)` of mean(a) - mean(b) for
/// independent samples: each resample draws `a` and `b` with replacement,
/// separately, at their own sizes. Non-finite values are dropped first.
pub fn bootstrap_mean_diff_ci(
    a: &[f64],
    b: &[f64],
    n_resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<(f64, f64), StatsError> {
    check_parameters(n_resamples, confidence)?;
    let (a, _) = finite_values(a);
    let (b, _) = finite_values(b);
    require_nonempty(&a, "a")?;
    require_nonempty(&b, "b")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let differences: Vec<f64> = (0..n_resamples)
        .map(|_| resampled_mean(&a, &mut rng) - resampled_mean(&b, &mut rng))
        .collect();
    Ok(percentile_interval(differences, confidence))
}

/// Percentile bootstrap interval `(low, high)` of the mean of the paired
/// differences `a[i] - b[i]`: whole pairs are resampled, which keeps the
/// seed-to-seed correlation that makes a paired comparison sharper. Pairs
/// with a non-finite side are dropped first.
pub fn bootstrap_paired_mean_diff_ci(
    a: &[f64],
    b: &[f64],
    n_resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<(f64, f64), StatsError> {
    check_parameters(n_resamples, confidence)?;
    if a.len() != b.len() {
        return Err(StatsError::PairedLengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    let (a, b) = finite_pairs(a, b);
    let differences: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    require_nonempty(&differences, "a - b")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<f64> = (0..n_resamples)
        .map(|_| resampled_mean(&differences, &mut rng))
        .collect();
    Ok(percentile_interval(means, confidence))
}

fn check_parameters(n_resamples: usize, confidence: f64) -> Result<(), StatsError> {
    if n_resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    // Written so that NaN is rejected too.
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::InvalidConfidence(confidence));
    }
    Ok(())
}

fn require_nonempty(values: &[f64], sample: &'static str) -> Result<(), StatsError> {
    if values.is_empty() {
        return Err(StatsError::EmptySample { sample });
    }
    Ok(())
}

fn resampled_mean(values: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    let total: f64 = (0..values.len())
        .map(|_| values[rng.random_range(0..values.len())])
        .sum();
    total / values.len() as f64
}

fn percentile_interval(mut statistics: Vec<f64>, confidence: f64) -> (f64, f64) {
    statistics.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (
        percentile_linear(&statistics, tail),
        percentile_linear(&statistics, 1.0 - tail),
    )
}
