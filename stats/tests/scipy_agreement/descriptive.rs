//! `describe` against numpy's mean/std/median and scipy's `sem` and
//! `t.interval`, over both samples of every case.

use expcluster_stats::{describe, percentile_linear};
use serde_json::json;

use crate::cases;
use crate::python::{decode, encode_all, run_reference};
use crate::tolerance::Mismatches;

const REFERENCE: &str = r#"
def run(case):
    raw = case["values"]
    x = finite(raw)
    n = len(x)
    out = {"n": n, "n_nan": len(raw) - n}
    if n == 0:
        return out
    out.update(mean=np.mean(x), min=np.min(x), max=np.max(x), median=np.median(x))
    if n >= 2:
        se = stats.sem(x)
        if se == 0:
            # Deliberate difference: scipy's t.interval rejects scale = 0 and
            # returns NaN; a constant sample's interval is the point itself.
            low = high = np.mean(x)
        else:
            low, high = stats.t.interval(0.95, n - 1, loc=np.mean(x), scale=se)
        out.update(std=np.std(x, ddof=1), se=se, ci95_low=low, ci95_high=high)
    return out
"#;

#[test]
fn describe_matches_numpy_and_scipy() {
    let mut samples: Vec<(String, Vec<f64>)> = Vec::new();
    for case in cases::unpaired().into_iter().chain(cases::paired()) {
        samples.push((format!("{} / a", case.label), case.a));
        samples.push((format!("{} / b", case.label), case.b));
    }
    samples.push(("large offset".into(), vec![1e6 + 0.1, 1e6 + 0.2, 1e6 + 0.4]));
    samples.push(("n = 3 with nan".into(), vec![f64::NAN, 2.0, 4.0, 9.0]));
    let inputs: Vec<_> = samples
        .iter()
        .map(|(_, values)| json!({ "values": encode_all(values) }))
        .collect();
    let (expected, version) = run_reference(REFERENCE, &inputs);
    let mut mismatches = Mismatches::default();
    for ((label, values), reference) in samples.iter().zip(&expected) {
        let actual = describe(values);
        let reference_n = reference["n"].as_u64().unwrap_or(u64::MAX);
        if actual.n as u64 != reference_n
            || actual.n_nan as u64 != reference["n_nan"].as_u64().unwrap_or(u64::MAX)
        {
            mismatches.note(format!(
                "{label}: counts {}/{} vs {reference}",
                actual.n, actual.n_nan
            ));
        }
        let fields = [
            ("mean", actual.mean),
            ("std", actual.std),
            ("se", actual.se),
            ("ci95_low", actual.ci95_low),
            ("ci95_high", actual.ci95_high),
            ("min", actual.min),
            ("max", actual.max),
            ("median", actual.median),
        ];
        for (name, value) in fields {
            let expected_value = reference.get(name).and_then(decode);
            mismatches.check_option(label, name, value, expected_value);
        }
    }
    mismatches.assert_none(samples.len(), &version);
}

#[test]
fn small_samples_leave_spread_undefined() {
    let empty = describe(&[f64::NAN, f64::INFINITY]);
    assert_eq!((empty.n, empty.n_nan), (0, 2));
    assert_eq!(empty.mean, None);
    assert_eq!(empty.median, None);
    let single = describe(&[0.25, f64::NAN]);
    assert_eq!((single.n, single.n_nan), (1, 1));
    assert_eq!(single.mean, Some(0.25));
    assert_eq!(single.median, Some(0.25));
    assert_eq!((single.std, single.se, single.ci95_low), (None, None, None));
    let text = serde_json::to_string(&single).expect("serialises");
    assert!(text.contains("\"std\":null"), "{text}");
}

/// Deliberate difference: numpy's summation leaves a residue for repeated
/// 0.1 (`np.std([0.1] * 3, ddof=1)` is about 1.7e-17); the mathematically
/// exact 0 is what a stage summary should say.
#[test]
fn identical_values_have_exactly_zero_spread() {
    let summary = describe(&[0.1, 0.1, 0.1]);
    assert_eq!(summary.mean, Some(0.1));
    assert_eq!(summary.std, Some(0.0));
    assert_eq!(
        (summary.ci95_low, summary.ci95_high),
        (Some(0.1), Some(0.1))
    );
}

const PERCENTILES: &str = r#"
def run(case):
    return {"q": [np.percentile(np.asarray(case["values"]), 100 * q) for q in case["qs"]]}
"#;

#[test]
fn percentiles_match_numpy_linear() {
    let qs = [0.0, 0.025, 0.1, 0.25, 0.5, 0.6, 0.975, 1.0];
    let samples: Vec<Vec<f64>> = vec![
        vec![3.0],
        vec![1.0, 2.0],
        vec![0.1, 0.7, 0.2, 1.3, -4.0, 2.5, 2.5],
        (0..1000).map(|i| ((i * 37) % 101) as f64 / 7.0).collect(),
    ];
    let inputs: Vec<_> = samples
        .iter()
        .map(|s| json!({ "values": encode_all(s), "qs": qs }))
        .collect();
    let (expected, version) = run_reference(PERCENTILES, &inputs);
    let mut mismatches = Mismatches::default();
    for (values, reference) in samples.iter().zip(&expected) {
        let mut ordered = values.clone();
        ordered.sort_by(f64::total_cmp);
        for (i, q) in qs.iter().enumerate() {
            let expected_value = decode(&reference["q"][i]).unwrap_or(f64::NAN);
            mismatches.check(
                &format!("n = {}", values.len()),
                &format!("q{q}"),
                percentile_linear(&ordered, *q),
                expected_value,
            );
        }
    }
    mismatches.assert_none(samples.len(), &version);
}
