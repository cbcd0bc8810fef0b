//! The interval beside each test is the one the test implies: it agrees with
//! scipy's `ttest_rel(...).confidence_interval()` and
//! `ttest_ind(equal_var=False).confidence_interval()` to 1e-9, it excludes 0
//! exactly when the two-sided p-value is below 0.05, and the Hodges–Lehmann
//! interval is the set of shifts scipy's `mannwhitneyu` does not reject.

use expcluster_stats::{compare, Comparison, TestMethod};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::cases::{self, Case};
use crate::python::{decode, encode, encode_all, run_reference};
use crate::tolerance::Mismatches;

const LEVEL: f64 = 0.95;

const T_INTERVALS: &str = r#"
def run(case):
    if case["paired"]:
        r = stats.ttest_rel(*finite_pairs(case["a"], case["b"]))
    else:
        r = stats.ttest_ind(finite(case["a"]), finite(case["b"]), equal_var=False)
    ci = r.confidence_interval(0.95)
    return {"pvalue": r.pvalue, "low": ci.low, "high": ci.high}
"#;

/// Zero variance in every arrangement, on top of the generated cases.
fn zero_variance_cases() -> Vec<Case> {
    let spread: Vec<f64> = (0..6).map(|i| 0.5 + 0.1 * f64::from(i)).collect();
    let shifted: Vec<f64> = spread.iter().map(|x| x - 0.25).collect();
    vec![
        Case::new("constant, equal", vec![0.5; 4], vec![0.5; 4]),
        Case::new("constant, different", vec![0.5; 5], vec![0.75; 5]),
        Case::new("one constant", vec![0.5; 5], vec![0.4, 0.6, 0.7, 0.5, 0.55]),
        Case::new("constant difference", spread.clone(), shifted),
        Case::new("identical", spread.clone(), spread),
    ]
}

/// Checks duality on one comparison; returns whether a p-value was defined.
fn check_duality(mismatches: &mut Mismatches, label: &str, c: &Comparison) -> bool {
    match (c.p_value, c.interval) {
        (Some(p), Some(interval)) => {
            if interval.excludes(0.0) != (p < 1.0 - LEVEL) {
                mismatches.note(format!(
                    "{label}: {} p = {p} but the interval is [{}, {}]",
                    c.method.as_str(),
                    interval.low,
                    interval.high
                ));
            }
            true
        }
        (None, None) => false,
        _ => {
            mismatches.note(format!("{label}: a p-value without an interval or back"));
            false
        }
    }
}

fn t_interval_agreement(paired: bool) {
    let mut all = if paired {
        cases::paired()
    } else {
        cases::unpaired()
    };
    all.extend(zero_variance_cases());
    let inputs: Vec<Value> = all
        .iter()
        .map(|case| json!({"a": encode_all(&case.a), "b": encode_all(&case.b), "paired": paired}))
        .collect();
    let (expected, version) = run_reference(T_INTERVALS, &inputs);
    let method = if paired {
        TestMethod::PairedT
    } else {
        TestMethod::Welch
    };
    let mut mismatches = Mismatches::default();
    let mut defined = 0;
    for (case, reference) in all.iter().zip(&expected) {
        let c = compare(&case.a, &case.b, method, LEVEL).expect("valid comparison");
        if !check_duality(&mut mismatches, &case.label, &c) {
            continue;
        }
        defined += 1;
        let interval = c.interval.expect("checked above");
        let scipy_p = decode(&reference["pvalue"]).expect("a p-value");
        mismatches.check(
            &case.label,
            "pvalue",
            c.p_value.unwrap_or(f64::NAN),
            scipy_p,
        );
        let low = decode(&reference["low"]).expect("a low end");
        let high = decode(&reference["high"]).expect("a high end");
        mismatches.check(&case.label, "interval low", interval.low, low);
        mismatches.check(&case.label, "interval high", interval.high, high);
    }
    assert!(defined > 40, "only {defined} cases had a defined test");
    mismatches.assert_none(all.len(), &version);
}

#[test]
fn paired_t_interval_matches_scipy_and_the_test() {
    t_interval_agreement(true);
}

#[test]
fn welch_interval_matches_scipy_and_the_test() {
    t_interval_agreement(false);
}

/// At each finite end of the Hodges–Lehmann interval, scipy's `mannwhitneyu`
/// on `a - δ` must accept the shift just inside and reject the one just
/// outside (δ in the middle of the gap between neighbouring pairwise
/// differences); an infinite end means every shift beyond the data is
/// accepted. Only samples sharing no value: see `hodges_lehmann.rs`.
const HL_INVERSION: &str = r#"
def run(case):
    a, b = finite(case["a"]), finite(case["b"])
    d = np.unique(np.subtract.outer(a, b).ravel())
    p = lambda delta: stats.mannwhitneyu(a - delta, b).pvalue
    def cell(i):
        # the open gap between distinct differences i - 1 and i
        lo = d[i - 1] if i > 0 else d[0] - 1.0
        hi = d[i] if i < len(d) else d[-1] + 1.0
        return (lo + hi) / 2.0
    out = {}
    for end, inward in (("low", 1), ("high", 0)):
        x = case[end]
        if not np.isfinite(x):
            out[end] = {"outside": p(d[0] - 1.0) if end == "low" else p(d[-1] + 1.0)}
            continue
        i = int(np.searchsorted(d, x))
        out[end] = {"inside": p(cell(i + inward)), "outside": p(cell(i + 1 - inward))}
    return out
"#;

#[test]
fn hodges_lehmann_interval_inverts_scipy_mann_whitney() {
    let all: Vec<Case> = cases::unpaired()
        .into_iter()
        .filter(|case| {
            let finite = |v: &[f64]| v.iter().filter(|x| x.is_finite()).count();
            let shared = case.a.iter().any(|x| x.is_finite() && case.b.contains(x));
            finite(&case.a) >= 2 && finite(&case.b) >= 2 && !shared && case.b.len() < 100
        })
        .collect();
    let comparisons: Vec<Comparison> = all
        .iter()
        .map(|case| compare(&case.a, &case.b, TestMethod::MannWhitney, LEVEL).expect("unpaired"))
        .collect();
    let inputs: Vec<Value> = all
        .iter()
        .zip(&comparisons)
        .map(|(case, c)| {
            let interval = c.interval.expect("defined for two values each");
            json!({"a": encode_all(&case.a), "b": encode_all(&case.b),
                   "low": encode(interval.low), "high": encode(interval.high)})
        })
        .collect();
    let (expected, version) = run_reference(HL_INVERSION, &inputs);
    let mut mismatches = Mismatches::default();
    for ((case, c), reference) in all.iter().zip(&comparisons).zip(&expected) {
        check_duality(&mut mismatches, &case.label, c);
        let interval = c.interval.expect("defined");
        for (end, value) in [("low", interval.low), ("high", interval.high)] {
            let outside = decode(&reference[end]["outside"]).expect("p outside");
            let inside = reference[end].get("inside").and_then(decode).unwrap_or(1.0);
            let degenerate = interval.low == interval.high;
            if value.is_finite() && outside >= 1.0 - LEVEL {
                mismatches.note(format!(
                    "{}: scipy accepts the shift just beyond the {end} end {value} (p = {outside})",
                    case.label
                ));
            }
            if !value.is_finite() && outside < 1.0 - LEVEL {
                mismatches.note(format!(
                    "{}: unbounded {end} end but scipy rejects beyond the data",
                    case.label
                ));
            }
            if !degenerate && inside < 1.0 - LEVEL {
                mismatches.note(format!(
                    "{}: scipy rejects the shift just inside the {end} end {value} (p = {inside})",
                    case.label
                ));
            }
        }
    }
    assert!(all.len() > 30, "only {} cases", all.len());
    mismatches.assert_none(all.len(), &version);
}

/// A sample of 2 to 30 values: continuous, on a coarse grid (ties), or constant.
fn sample(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        4 => prop::collection::vec(-3.0..3.0_f64, n),
        3 => prop::collection::vec((-3..4_i32).prop_map(|v| f64::from(v) * 0.25), n),
        1 => (-2.0..2.0_f64).prop_map(move |v| vec![v; n]),
    ]
}

/// Paired samples: `b` is `a` minus noise, the noise continuous, tied,
/// constant (zero-variance differences) or zero.
fn paired_samples() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (2..=30_usize)
        .prop_flat_map(|n| (sample(n), sample(n)))
        .prop_map(|(a, noise)| {
            let b = a.iter().zip(&noise).map(|(x, e)| x - 0.3 * e).collect();
            (a, b)
        })
}

fn unpaired_samples() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (2..=30_usize, 2..=30_usize).prop_flat_map(|(n, m)| (sample(n), sample(m)))
}

/// Panics (a property failure) unless the comparison's interval and p agree.
fn assert_dual(c: &Comparison) {
    let mut mismatches = Mismatches::default();
    check_duality(&mut mismatches, c.method.as_str(), c);
    mismatches.assert_none(1, "(property)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn paired_t_interval_excludes_zero_exactly_when_p_is_below_alpha(
        (a, b) in paired_samples(),
    ) {
        assert_dual(&compare(&a, &b, TestMethod::PairedT, LEVEL).expect("equal lengths"));
    }

    #[test]
    fn welch_interval_excludes_zero_exactly_when_p_is_below_alpha(
        (a, b) in unpaired_samples(),
    ) {
        assert_dual(&compare(&a, &b, TestMethod::Welch, LEVEL).expect("unpaired"));
    }

    /// The rank interval is dual to the test whenever no value is shared.
    #[test]
    fn hodges_lehmann_interval_excludes_zero_exactly_when_p_is_below_alpha(
        (a, b) in unpaired_samples(),
    ) {
        prop_assume!(!a.iter().any(|x| b.contains(x)));
        let c = compare(&a, &b, TestMethod::MannWhitney, LEVEL).expect("unpaired");
        prop_assert!(c.p_value.is_some());
        assert_dual(&c);
        prop_assert!(!c.notes.iter().any(|note| note.contains("Hodges")), "{:?}", c.notes);
    }
}
