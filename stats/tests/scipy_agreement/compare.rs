//! `compare` runs the one test it is given, reports the interval that test
//! implies, and replaces undefined values by `None` plus a note.

use expcluster_stats::{
    compare, mann_whitney_u, paired_t_test, welch_t_test, IntervalMethod, StatsError, TestMethod,
};

#[test]
fn welch_comparison_carries_only_welch_and_its_interval() {
    let a = [0.81, 0.84, f64::NAN, 0.79, 0.86];
    let b = [0.75, 0.77, 0.78, 0.74];
    let c = compare(&a, &b, TestMethod::Welch, 0.95).expect("unpaired never fails");
    assert_eq!((c.a.n, c.a.n_nan, c.b.n), (4, 1, 4));
    let welch = welch_t_test(&a, &b);
    assert_eq!(c.welch, Some(welch));
    assert_eq!(c.p_value, Some(welch.pvalue));
    assert_eq!((c.paired_t, c.mann_whitney, c.n_pairs), (None, None, None));
    let diff = c.mean_diff.expect("defined");
    assert!((diff - (0.825 - 0.76)).abs() < 1e-12);
    let interval = c.interval.expect("interval");
    assert_eq!(interval.method, IntervalMethod::WelchSatterthwaite);
    assert_eq!(
        (interval.low, interval.high),
        welch.confidence_interval(0.95)
    );
    assert_eq!(interval.estimate, diff);
    assert!(c.cohens_d.is_some() && c.hedges_g.is_some() && c.cohens_dz.is_none());
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    let text = serde_json::to_string(&c).expect("serialises");
    assert!(text.contains("\"method\":\"welch\""), "{text}");
    assert!(
        text.contains("\"method\":\"welch_satterthwaite\""),
        "{text}"
    );
}

#[test]
fn paired_comparison_uses_complete_pairs() {
    let a = [0.7, f64::NAN, 0.9, 0.8, 0.95, 0.6];
    let b = [0.65, 0.7, 0.85, f64::NAN, 0.9, 0.62];
    let c = compare(&a, &b, TestMethod::PairedT, 0.9).expect("equal lengths");
    assert_eq!(c.n_pairs, Some(4));
    let t = paired_t_test(&a, &b).expect("equal lengths");
    assert_eq!(c.paired_t, Some(t));
    assert_eq!((c.welch, c.mann_whitney), (None, None));
    let interval = c.interval.expect("interval");
    assert_eq!(interval.method, IntervalMethod::PairedT);
    assert_eq!(interval.confidence, 0.9);
    assert_eq!((interval.low, interval.high), t.confidence_interval(0.9));
    assert!(c.cohens_dz.is_some());
    assert_eq!(
        compare(&a, &b[..5], TestMethod::PairedT, 0.95),
        Err(StatsError::PairedLengthMismatch { a: 6, b: 5 })
    );
    assert!(matches!(
        compare(&a, &b, TestMethod::PairedT, 1.0),
        Err(StatsError::InvalidConfidence(_))
    ));
}

#[test]
fn mann_whitney_comparison_reports_the_hodges_lehmann_shift() {
    let a = [1.1, 2.3, 3.2, 4.7, 5.05];
    let b = [0.2, 0.9, 1.6, 2.05];
    let c = compare(&a, &b, TestMethod::MannWhitney, 0.95).expect("unpaired");
    assert_eq!(c.mann_whitney, Some(mann_whitney_u(&a, &b)));
    let interval = c.interval.expect("interval");
    assert_eq!(interval.method, IntervalMethod::HodgesLehmannExact);
    // The median of the 20 pairwise differences a_i - b_j.
    let mut differences: Vec<f64> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| x - y))
        .collect();
    differences.sort_by(f64::total_cmp);
    assert_eq!(interval.estimate, (differences[9] + differences[10]) / 2.0);
    assert!(interval.low <= interval.estimate && interval.estimate <= interval.high);
    // 2 vs 2 values cannot reach p < 0.05: the interval is unbounded.
    let c = compare(&[1.0, 2.0], &[3.0, 4.0], TestMethod::MannWhitney, 0.95).expect("unpaired");
    let interval = c.interval.expect("interval");
    assert_eq!(
        (interval.low, interval.high),
        (f64::NEG_INFINITY, f64::INFINITY)
    );
    assert!(!interval.excludes(0.0) && c.p_value.is_some_and(|p| p >= 0.05));
}

#[test]
fn identical_samples_leave_the_undefined_test_out_with_a_note() {
    let values: Vec<f64> = (0..20).map(|i| f64::from(i) / 20.0).collect();
    let c = compare(&values, &values, TestMethod::PairedT, 0.95).expect("equal lengths");
    assert_eq!(c.mean_diff, Some(0.0));
    assert_eq!((c.paired_t, c.p_value, c.interval), (None, None, None));
    assert_eq!(c.cohens_d, Some(0.0));
    assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
    assert!(c.notes[0].contains("no other test"), "{:?}", c.notes);
}

#[test]
fn zero_variance_and_tiny_samples() {
    let c = compare(&[0.5; 4], &[0.75; 3], TestMethod::Welch, 0.95).expect("unpaired");
    assert_eq!((c.welch, c.p_value, c.interval), (None, None, None));
    assert_eq!(c.cohens_d, None);
    assert_eq!(c.mean_diff, Some(-0.25));
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);

    let c = compare(&[0.5], &[f64::NAN, 0.7, 0.8], TestMethod::Welch, 0.95).expect("unpaired");
    assert_eq!((c.welch, c.interval), (None, None));
    assert_eq!(c.mean_diff.map(|d| (d + 0.25).abs() < 1e-12), Some(true));
    assert_eq!(c.notes.len(), 1, "{:?}", c.notes);

    let c = compare(&[], &[], TestMethod::PairedT, 0.95).expect("equal lengths");
    assert_eq!((c.mean_diff, c.n_pairs), (None, Some(0)));
}
