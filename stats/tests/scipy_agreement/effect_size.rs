//! Cohen's d and Hedges' g against the textbook formulas evaluated with
//! numpy (`std(ddof=1)`) and `scipy.special.gammaln`.

use expcluster_stats::{cohens_d, hedges_g};

use crate::cases;
use crate::python::{decode, run_reference};
use crate::tolerance::Mismatches;

const REFERENCE: &str = r#"
def run(case):
    a, b = finite(case["a"]), finite(case["b"])
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return {"d": None, "g": None}
    pooled = ((n1 - 1) * np.var(a, ddof=1) + (n2 - 1) * np.var(b, ddof=1)) / (n1 + n2 - 2)
    if pooled == 0:
        return {"d": None, "g": None}
    d = (np.mean(a) - np.mean(b)) / np.sqrt(pooled)
    df = n1 + n2 - 2
    j = np.exp(special.gammaln(df / 2) - np.log(np.sqrt(df / 2)) - special.gammaln((df - 1) / 2))
    return {"d": d, "g": d * j}
"#;

#[test]
fn effect_sizes_match_reference_formulas() {
    let cases = cases::unpaired();
    let (expected, version) = run_reference(REFERENCE, &cases::to_json(&cases));
    let mut mismatches = Mismatches::default();
    for (case, reference) in cases.iter().zip(&expected) {
        mismatches.check_option(
            &case.label,
            "cohens_d",
            cohens_d(&case.a, &case.b),
            decode(&reference["d"]),
        );
        mismatches.check_option(
            &case.label,
            "hedges_g",
            hedges_g(&case.a, &case.b),
            decode(&reference["g"]),
        );
    }
    mismatches.assert_none(cases.len(), &version);
}

#[test]
fn hedges_correction_at_the_smallest_df() {
    // df = 2: J = Γ(1) / (1 · Γ(1/2)) = 1/√π.
    let a = [0.0, 1.0];
    let b = [1.0, 2.0];
    let d = cohens_d(&a, &b).expect("defined");
    let g = hedges_g(&a, &b).expect("defined");
    assert!((g / d - 1.0 / std::f64::consts::PI.sqrt()).abs() < 1e-14);
    assert_eq!(cohens_d(&[1.0], &b), None);
    assert_eq!(hedges_g(&[2.0, 2.0], &[3.0, 3.0]), None);
}
