//! Welch's and the paired t-test against `ttest_ind(equal_var=False)` and
//! `ttest_rel`, including the intervals they imply
//! (`confidence_interval(0.95)` and `(0.99)`).

use expcluster_stats::{paired_t_test, welch_t_test, StatsError, TTestResult};
use serde_json::Value;

use crate::cases;
use crate::python::{decode, field, run_reference};
use crate::tolerance::Mismatches;

const WELCH: &str = r#"
def run(case):
    r = stats.ttest_ind(finite(case["a"]), finite(case["b"]), equal_var=False)
    return {"statistic": r.statistic, "pvalue": r.pvalue, "df": r.df,
            "ci95": list(r.confidence_interval(0.95)), "ci99": list(r.confidence_interval(0.99))}
"#;

const PAIRED: &str = r#"
def run(case):
    r = stats.ttest_rel(*finite_pairs(case["a"], case["b"]))
    return {"statistic": r.statistic, "pvalue": r.pvalue, "df": float(r.df),
            "ci95": list(r.confidence_interval(0.95)), "ci99": list(r.confidence_interval(0.99))}
"#;

/// The intervals of `actual` at 95% and 99% against scipy's.
fn check_intervals(
    mismatches: &mut Mismatches,
    label: &str,
    actual: &TTestResult,
    reference: &Value,
) {
    for (level, key) in [(0.95, "ci95"), (0.99, "ci99")] {
        let (low, high) = actual.confidence_interval(level);
        let expected = &reference[key];
        let expected_low = decode(&expected[0]).expect("scipy gives a low end");
        let expected_high = decode(&expected[1]).expect("scipy gives a high end");
        mismatches.check(label, &format!("{key} low"), low, expected_low);
        mismatches.check(label, &format!("{key} high"), high, expected_high);
    }
}

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
        check_intervals(&mut mismatches, &case.label, &actual, reference);
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
        check_intervals(&mut mismatches, &case.label, &actual, reference);
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
