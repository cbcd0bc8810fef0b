//! Mann–Whitney U and the Wilcoxon signed-rank test against scipy's
//! `mannwhitneyu` and `wilcoxon` with default arguments. The cases cover
//! every branch of scipy's `method='auto'`: exact, permutation (ties or
//! zeros with n <= 13) and asymptotic (ties, large samples, n > 50).

use expcluster_stats::{mann_whitney_u, wilcoxon_signed_rank, RankTestMethod, StatsError};

use crate::cases;
use crate::python::{field, run_reference};
use crate::tolerance::Mismatches;

const MANN_WHITNEY: &str = r#"
def run(case):
    r = stats.mannwhitneyu(finite(case["a"]), finite(case["b"]))
    return {"statistic": r.statistic, "pvalue": r.pvalue}
"#;

const WILCOXON: &str = r#"
def run(case):
    r = stats.wilcoxon(*finite_pairs(case["a"], case["b"]))
    return {"statistic": r.statistic, "pvalue": r.pvalue}
"#;

#[test]
fn mann_whitney_matches_scipy() {
    let cases = cases::unpaired();
    let (expected, version) = run_reference(MANN_WHITNEY, &cases::to_json(&cases));
    let mut mismatches = Mismatches::default();
    let mut methods = Vec::new();
    for (case, reference) in cases.iter().zip(&expected) {
        let actual = mann_whitney_u(&case.a, &case.b);
        methods.push(actual.method);
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
    }
    for method in [RankTestMethod::Exact, RankTestMethod::Asymptotic] {
        assert!(methods.contains(&method), "no case exercises {method:?}");
    }
    mismatches.assert_none(cases.len(), &version);
}

#[test]
fn wilcoxon_matches_scipy() {
    let cases = cases::paired();
    let (expected, version) = run_reference(WILCOXON, &cases::to_json(&cases));
    let mut mismatches = Mismatches::default();
    let mut methods = Vec::new();
    for (case, reference) in cases.iter().zip(&expected) {
        let actual = wilcoxon_signed_rank(&case.a, &case.b).expect("equal lengths");
        methods.push(actual.method);
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
    }
    for method in [
        RankTestMethod::Exact,
        RankTestMethod::Permutation,
        RankTestMethod::Asymptotic,
    ] {
        assert!(methods.contains(&method), "no case exercises {method:?}");
    }
    mismatches.assert_none(cases.len(), &version);
}

#[test]
fn method_selection_follows_scipy_auto() {
    let distinct: Vec<f64> = (0..9).map(|i| f64::from(i) * 1.5).collect();
    let shifted: Vec<f64> = distinct.iter().map(|x| x + 0.2).collect();
    assert_eq!(
        mann_whitney_u(&distinct, &shifted).method,
        RankTestMethod::Asymptotic
    );
    assert_eq!(
        mann_whitney_u(&distinct[..8], &shifted).method,
        RankTestMethod::Exact
    );
    assert_eq!(
        mann_whitney_u(&[1.0, 2.0], &[2.0, 3.0]).method,
        RankTestMethod::Asymptotic
    );

    let zero_once: Vec<f64> = (0..13)
        .map(|i| if i == 0 { 0.0 } else { f64::from(i) })
        .collect();
    let none: Vec<f64> = vec![0.0; 13];
    let w = wilcoxon_signed_rank(&zero_once, &none).expect("equal lengths");
    assert_eq!(w.method, RankTestMethod::Permutation);
    let zero_once_14: Vec<f64> = (0..14).map(f64::from).collect();
    let w = wilcoxon_signed_rank(&zero_once_14, &[0.0; 14]).expect("equal lengths");
    assert_eq!(w.method, RankTestMethod::Asymptotic);
    let distinct_50: Vec<f64> = (1..=50).map(f64::from).collect();
    let w = wilcoxon_signed_rank(&distinct_50, &[0.0; 50]).expect("equal lengths");
    assert_eq!(w.method, RankTestMethod::Exact);
}

#[test]
fn wilcoxon_all_zero_differences() {
    let values = [0.3, 0.5, 0.9];
    let w = wilcoxon_signed_rank(&values, &values).expect("equal lengths");
    assert_eq!((w.statistic, w.pvalue), (0.0, 1.0));
    let many: Vec<f64> = (0..20).map(f64::from).collect();
    let w = wilcoxon_signed_rank(&many, &many).expect("equal lengths");
    assert_eq!(w.statistic, 0.0);
    assert!(
        w.pvalue.is_nan(),
        "scipy's normal approximation gives 0/0 here"
    );
    assert!(matches!(
        wilcoxon_signed_rank(&[1.0], &[]),
        Err(StatsError::PairedLengthMismatch { a: 1, b: 0 })
    ));
}
