//! Holm's adjustment against statsmodels' algorithm written out in numpy
//! (statsmodels itself may not be installed).

use expcluster_stats::holm_bonferroni;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::python::{decode, encode_all, run_reference};
use crate::tolerance::Mismatches;

/// statsmodels.stats.multitest.multipletests(p, method='holm'), NaNs removed
/// from the family first (the crate's documented extension).
const REFERENCE: &str = r#"
def run(case):
    p = np.asarray(case["p"], dtype=float)
    out = np.full(len(p), np.nan)
    keep = ~np.isnan(p)
    q = p[keep]
    order = np.argsort(q)
    m = len(q)
    adjusted = np.maximum.accumulate(q[order] * np.arange(m, 0, -1))
    adjusted[adjusted > 1] = 1
    restored = np.empty(m)
    restored[order] = adjusted
    out[keep] = restored
    return {"adjusted": out}
"#;

#[test]
fn holm_matches_statsmodels_algorithm() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut families: Vec<Vec<f64>> = (0..40)
        .map(|i| {
            let m = 1 + i % 12;
            (0..m)
                .map(|_| {
                    let p: f64 = rng.random();
                    // Small p-values and exact ties both occur in practice.
                    if rng.random_range(0..4) == 0 {
                        p * 1e-4
                    } else {
                        (p * 20.0).round() / 20.0
                    }
                })
                .collect()
        })
        .collect();
    families.push(vec![]);
    families.push(vec![0.01, f64::NAN, 0.04, 0.03]);
    families.push(vec![0.5, 0.5, 0.5]);
    families.push(vec![1.0, 0.0, 1e-300]);
    let inputs: Vec<_> = families
        .iter()
        .map(|p| json!({ "p": encode_all(p) }))
        .collect();
    let (expected, version) = run_reference(REFERENCE, &inputs);
    let mut mismatches = Mismatches::default();
    for (i, (family, reference)) in families.iter().zip(&expected).enumerate() {
        let actual = holm_bonferroni(family);
        assert_eq!(actual.len(), family.len());
        for (j, value) in actual.iter().enumerate() {
            let expected_value = decode(&reference["adjusted"][j]).unwrap_or(f64::NAN);
            mismatches.check(
                &format!("family #{i}"),
                &format!("p[{j}]"),
                *value,
                expected_value,
            );
        }
    }
    mismatches.assert_none(families.len(), &version);
}
