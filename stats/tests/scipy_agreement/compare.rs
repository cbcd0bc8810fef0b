//! `compare` bundles the scipy-exact pieces and replaces their undefined
//! values by `None` plus a note.

use expcluster_stats::{
    compare, mann_whitney_u, paired_t_test, welch_t_test, wilcoxon_signed_rank, StatsError,
};

#[test]
fn unpaired_comparison_carries_the_unpaired_tests() {
    let a = [0.81, 0.84, f64::NAN, 0.79, 0.86];
    let b = [0.75, 0.77, 0.78, 0.74];
    let c = compare(&a, &b, false, 9).expect("unpaired never fails");
    assert_eq!((c.a.n, c.a.n_nan, c.b.n), (4, 1, 4));
    assert_eq!(c.welch, Some(welch_t_test(&a, &b)));
    assert_eq!(c.mann_whitney, Some(mann_whitney_u(&a, &b)));
    assert_eq!((c.paired_t, c.wilcoxon, c.n_pairs), (None, None, None));
    let diff = c.mean_diff.expect("defined");
    assert!((diff - (0.825 - 0.76)).abs() < 1e-12);
    let (low, high) = (
        c.mean_diff_ci_low.expect("ci"),
        c.mean_diff_ci_high.expect("ci"),
    );
    assert!(low <= diff && diff <= high);
    assert!(c.cohens_d.is_some() && c.hedges_g.is_some());
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    let text = serde_json::to_string(&c).expect("serialises");
    // Kept tests are finite, so nothing in them serialises as null.
    assert!(!text.contains("\"statistic\":null"), "{text}");
    assert!(!text.contains("\"pvalue\":null"), "{text}");
}

#[test]
fn paired_comparison_uses_complete_pairs() {
    let a = [0.7, f64::NAN, 0.9, 0.8, 0.95, 0.6];
    let b = [0.65, 0.7, 0.85, f64::NAN, 0.9, 0.62];
    let c = compare(&a, &b, true, 9).expect("equal lengths");
    assert_eq!(c.n_pairs, Some(4));
    assert_eq!(
        c.paired_t,
        Some(paired_t_test(&a, &b).expect("equal lengths"))
    );
    assert_eq!(
        c.wilcoxon,
        Some(wilcoxon_signed_rank(&a, &b).expect("equal lengths"))
    );
    assert!(c.welch.is_some());
    assert_eq!(
        compare(&a, &b[..5], true, 9),
        Err(StatsError::PairedLengthMismatch { a: 6, b: 5 })
    );
}

#[test]
fn identical_samples_leave_undefined_tests_out_with_notes() {
    let values: Vec<f64> = (0..20).map(|i| f64::from(i) / 20.0).collect();
    let c = compare(&values, &values, true, 1).expect("equal lengths");
    assert_eq!(c.mean_diff, Some(0.0));
    assert_eq!(c.paired_t, None);
    assert_eq!(c.wilcoxon, None);
    assert_eq!(c.cohens_d, Some(0.0));
    let welch = c.welch.expect("defined for identical varying samples");
    assert_eq!((welch.statistic, welch.pvalue), (0.0, 1.0));
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
}

#[test]
fn zero_variance_and_tiny_samples() {
    let c = compare(&[0.5; 4], &[0.75; 3], false, 1).expect("unpaired");
    assert_eq!(c.welch, None);
    assert_eq!(c.cohens_d, None);
    assert_eq!(c.mean_diff, Some(-0.25));
    assert!(c.mann_whitney.is_some());
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);

    let c = compare(&[0.5], &[f64::NAN, 0.7, 0.8], false, 1).expect("unpaired");
    assert_eq!(
        (c.welch, c.mann_whitney, c.mean_diff_ci_low),
        (None, None, None)
    );
    assert_eq!(c.mean_diff.map(|d| (d + 0.25).abs() < 1e-12), Some(true));
    assert_eq!(c.notes.len(), 1, "{:?}", c.notes);

    let c = compare(&[], &[], true, 1).expect("equal lengths");
    assert_eq!((c.mean_diff, c.n_pairs), (None, Some(0)));
}
