//! The bootstrap interval: deterministic per seed, and the same interval as
//! `scipy.stats.bootstrap(method='percentile')` up to Monte Carlo error (the
//! generators differ, so only the method, not the draws, can be compared).

use expcluster_stats::{bootstrap_mean_diff_ci, bootstrap_paired_mean_diff_ci, StatsError};
use serde_json::json;

use crate::python::{encode_all, field, run_reference};

const REFERENCE: &str = r#"
def run(case):
    a, b = finite(case["a"]), finite(case["b"])
    diff = lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis)
    r = stats.bootstrap((a, b), diff, n_resamples=40000, confidence_level=0.9,
                        method="percentile", rng=np.random.default_rng(1))
    return {"low": r.confidence_interval.low, "high": r.confidence_interval.high}
"#;

fn wave(n: usize, phase: f64, centre: f64) -> Vec<f64> {
    (0..n)
        .map(|i| centre + (i as f64 * 1.7 + phase).sin())
        .collect()
}

#[test]
fn interval_matches_scipy_percentile_bootstrap() {
    let samples = [
        (wave(12, 0.0, 0.0), wave(15, 1.0, 0.5)),
        (wave(30, 0.3, 2.0), wave(25, 2.0, 1.0)),
        (wave(8, 0.7, 0.0), wave(20, 0.1, 0.0)),
    ];
    let inputs: Vec<_> = samples
        .iter()
        .map(|(a, b)| json!({ "a": encode_all(a), "b": encode_all(b) }))
        .collect();
    let (expected, version) = run_reference(REFERENCE, &inputs);
    for ((a, b), reference) in samples.iter().zip(&expected) {
        let (low, high) = bootstrap_mean_diff_ci(a, b, 40_000, 0.9, 11).expect("valid input");
        let (expected_low, expected_high) = (field(reference, "low"), field(reference, "high"));
        // Percentile standard error with 40k resamples is under 1% of the
        // width; 5% leaves no room for flakiness yet catches a wrong method.
        let width = expected_high - expected_low;
        assert!(
            (low - expected_low).abs() < 0.05 * width
                && (high - expected_high).abs() < 0.05 * width,
            "({low}, {high}) vs scipy {version} ({expected_low}, {expected_high})"
        );
    }
}

#[test]
fn same_seed_same_interval() {
    let a = wave(10, 0.0, 1.0);
    let b = wave(9, 0.5, 0.0);
    let first = bootstrap_mean_diff_ci(&a, &b, 2000, 0.95, 42).expect("valid input");
    assert_eq!(
        first,
        bootstrap_mean_diff_ci(&a, &b, 2000, 0.95, 42).expect("valid input")
    );
    assert_ne!(
        first,
        bootstrap_mean_diff_ci(&a, &b, 2000, 0.95, 43).expect("valid input")
    );
    let paired = bootstrap_paired_mean_diff_ci(&a[..9], &b, 2000, 0.95, 42).expect("valid input");
    assert_eq!(
        paired,
        bootstrap_paired_mean_diff_ci(&a[..9], &b, 2000, 0.95, 42).expect("valid input")
    );
}

#[test]
fn degenerate_inputs() {
    assert_eq!(
        bootstrap_mean_diff_ci(&[2.0, 2.0], &[0.5, 0.5, 0.5], 500, 0.95, 1),
        Ok((1.5, 1.5))
    );
    assert_eq!(
        bootstrap_mean_diff_ci(&[f64::NAN], &[1.0], 500, 0.95, 1),
        Err(StatsError::EmptySample { sample: "a" })
    );
    assert_eq!(
        bootstrap_mean_diff_ci(&[1.0], &[1.0], 0, 0.95, 1),
        Err(StatsError::NoResamples)
    );
    assert!(matches!(
        bootstrap_mean_diff_ci(&[1.0], &[1.0], 10, 1.0, 1),
        Err(StatsError::InvalidConfidence(_))
    ));
    // Pairs resampled whole: a constant difference has a zero-width interval
    // even though each side varies.
    let a = [1.0, 5.0, 2.0, 8.0];
    let b = [0.5, 4.5, 1.5, 7.5];
    assert_eq!(
        bootstrap_paired_mean_diff_ci(&a, &b, 500, 0.95, 3),
        Ok((0.5, 0.5))
    );
}
