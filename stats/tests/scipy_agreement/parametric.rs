//! Welch's and the paired t-test against `ttest_ind(equal_var=False)` and
//! `ttest_rel`.

use expcluster_stats::{paired_t_test, welch_t_test, StatsError};

use crate::cases;
use crate::python::{field, run_reference};
use crate::tolerance::Mismatches;

const WELCH: &str = r#"
def run(case):
    r = stats.ttest_ind(finite(case["a"]), finite(case["b"]), equal_var=False)
    return {"statistic": r.statistic, "pvalue": r.pvalue, "df": r.df}
"#;

const PAIRED: &str = r#"
def run(case):
    r = stats.ttest_rel(*finite_pairs(case["a"], case["b"]))
    return {"statistic": r.statistic, "pvalue": r.pvalue, "df": float(r.df)}
"#;

#[test]
fn welch_matches_scipy_ttest_ind() {
    let cases = cases::unpaired();
    let (expected, version) = run_reference(WELCH, &cases::to_json(&cases));
    let mut mismatches = Mismatches::default();
    for (case, reference) in cases.iter().zip(&expected) {
        let actual = welch_t_test(&case.a, &case.b);
        mismatches.check(
            &case.label,
            "statistic",
            actual.statistic,
            field(reference, "statistic"),
        );
        mismatches.check(
            &case.label,
            "pvalue",
            actual.pvalue,
            field(reference, "pvalue"),
        );
        mismatches.check(&case.label, "df", actual.df, field(reference, "df"));
    }
    mismatches.assert_none(cases.len(), &version);
}

#[test]
fn paired_t_matches_scipy_ttest_rel() {
    let cases = cases::paired();
    let (expected, version) = run_reference(PAIRED, &cases::to_json(&cases));
    let mut mismatches = Mismatches::default();
    for (case, reference) in cases.iter().zip(&expected) {
        let actual = paired_t_test(&case.a, &case.b).expect("equal lengths");
        mismatches.check(
            &case.label,
            "statistic",
            actual.statistic,
            field(reference, "statistic"),
        );
        mismatches.check(
            &case.label,
            "pvalue",
            actual.pvalue,
            field(reference, "pvalue"),
        );
        mismatches.check(&case.label, "df", actual.df, field(reference, "df"));
    }
    mismatches.assert_none(cases.len(), &version);
}

#[test]
fn paired_t_rejects_unequal_lengths() {
    assert_eq!(
        paired_t_test(&[1.0, 2.0], &[1.0]),
        Err(StatsError::PairedLengthMismatch { a: 2, b: 1 })
    );
}

/// Deliberate difference: scipy sees a tiny numpy residue in the variance of
/// repeated 0.1 and 0.2 and reports a finite, astronomically large t; the
/// variances are exactly zero, so this is scipy's zero-variance answer.
#[test]
fn welch_on_inexact_constants_is_the_zero_variance_answer() {
    let result = welch_t_test(&[0.1, 0.1, 0.1], &[0.2, 0.2, 0.2]);
    assert_eq!(result.statistic, f64::NEG_INFINITY);
    assert_eq!((result.pvalue, result.df), (0.0, 1.0));
}
