//! Holm–Bonferroni adjustment across the comparisons of a stage.
//!
//! Equals statsmodels' `multipletests(p, method='holm')[1]`: sort ascending,
//! multiply the i-th smallest (0-based) by `m - i`, take the running maximum so
//! adjusted values are monotone in the raw ones, cap at 1, restore the order.

/// Holm-adjusted p-values in input order. NaN entries (tests that could not
/// be run) stay NaN and do not count towards the family size `m`; statsmodels
/// has no such rule, it assumes no NaN.
pub fn holm_bonferroni(p_values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p_values.len())
        .filter(|&i| !p_values[i].is_nan())
        .collect();
    // Ties may be ordered either way: the running maximum gives tied values
    // the same adjusted p-value regardless.
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let family_size = order.len();
    let mut adjusted = vec![f64::NAN; p_values.len()];
    let mut running_max = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = p_values[index] * (family_size - rank) as f64;
        running_max = running_max.max(scaled);
        adjusted[index] = running_max.min(1.0);
    }
    adjusted
}
