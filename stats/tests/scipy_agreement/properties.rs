//! Properties that must hold for any input, including hostile ones: no
//! panics, p-values in [0, 1], the symmetries of each test, and Holm's
//! monotonicity.

use expcluster_stats::{
    compare, describe, holm_bonferroni, mann_whitney_u, welch_t_test, wilcoxon_signed_rank,
    TestMethod,
};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -100.0..100.0_f64,
        2 => (-5..5_i32).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn in_unit_interval_or_nan(p: f64) -> bool {
    p.is_nan() || (0.0..=1.0).contains(&p)
}

proptest! {
    #[test]
    fn never_panics_and_p_values_are_probabilities(
        a in prop::collection::vec(value(), 0..25),
        b in prop::collection::vec(value(), 0..25),
    ) {
        let summary = describe(&a);
        prop_assert_eq!(summary.n + summary.n_nan, a.len());
        for method in [TestMethod::Welch, TestMethod::MannWhitney] {
            let c = compare(&a, &b, method, 0.95).expect("unpaired never fails");
            prop_assert_eq!(c.p_value.is_some(), c.interval.is_some());
            if let Some(p) = c.p_value {
                prop_assert!((0.0..=1.0).contains(&p));
            }
        }
        prop_assert!(in_unit_interval_or_nan(welch_t_test(&a, &b).pvalue));
        let n = a.len().min(b.len());
        let w = wilcoxon_signed_rank(&a[..n], &b[..n]).expect("equal lengths");
        prop_assert!(in_unit_interval_or_nan(w.pvalue));
        let c = compare(&a[..n], &b[..n], TestMethod::PairedT, 0.95).expect("equal lengths");
        if let Some(interval) = c.interval {
            prop_assert!(interval.low <= interval.high);
        }
    }

    #[test]
    fn swapping_samples_mirrors_the_tests(
        a in prop::collection::vec(-10.0..10.0_f64, 2..20),
        b in prop::collection::vec(-10.0..10.0_f64, 2..20),
    ) {
        let forward = welch_t_test(&a, &b);
        let backward = welch_t_test(&b, &a);
        prop_assert!(forward.statistic == -backward.statistic || forward.statistic.is_nan());
        prop_assert!(forward.pvalue == backward.pvalue || forward.pvalue.is_nan());
        let forward = mann_whitney_u(&a, &b);
        let backward = mann_whitney_u(&b, &a);
        prop_assert_eq!(forward.statistic + backward.statistic, (a.len() * b.len()) as f64);
        prop_assert!((forward.pvalue - backward.pvalue).abs() < 1e-15);
        let n = a.len().min(b.len());
        let forward = wilcoxon_signed_rank(&a[..n], &b[..n]).expect("equal lengths");
        let backward = wilcoxon_signed_rank(&b[..n], &a[..n]).expect("equal lengths");
        prop_assert_eq!(forward.statistic, backward.statistic);
        prop_assert!((forward.pvalue - backward.pvalue).abs() < 1e-15);
    }

    #[test]
    fn holm_is_monotone_and_bounded(p in prop::collection::vec(0.0..=1.0_f64, 0..30)) {
        let adjusted = holm_bonferroni(&p);
        for (raw, adj) in p.iter().zip(&adjusted) {
            prop_assert!(raw <= adj && *adj <= 1.0);
        }
        for i in 0..p.len() {
            for j in 0..p.len() {
                if p[i] <= p[j] {
                    prop_assert!(adjusted[i] <= adjusted[j]);
                }
            }
        }
    }
}
