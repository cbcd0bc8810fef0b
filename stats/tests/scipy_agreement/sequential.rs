//! The two-look group-sequential design: its probabilities against scipy, its
//! boundaries against the published tables, and its error rate by simulation.
//!
//! - The bivariate normal box P(|Z₁| < c₁, |Z₂| < c₂) against scipy's adaptive
//!   `integrate.quad` of the same integral (1e-10) and, independently, against
//!   `multivariate_normal.cdf` by inclusion–exclusion (its Genz algorithm is good to
//!   about 1e-8 at the tolerance asked).
//! - The critical values against Jennison & Turnbull, *Group Sequential Methods*
//!   (2000), Tables 2.1 and 2.3, two equally spaced looks at alpha 0.05: Pocock
//!   C = 2.178 (nominal 0.0294 at each look), O'Brien–Fleming C = 1.977, so 2.797 then
//!   1.977 (nominal 0.0052, then 0.0480); and against scipy's `brentq` on `quad` for
//!   unequal looks and other levels (1e-8).
//! - Under the null, with paired t-tests at 5 then 10 seeds, the design rejects
//!   5% ± 1% of 20,000 simulated experiments, while testing twice at 0.05 rejects
//!   more than 6%, and an O'Brien–Fleming second look sized from the first look's
//!   effect rejects more than 5.6%.

use expcluster_stats::{
    bivariate_normal_box, compare, required_nobs, t_test_power, Boundary, PowerDesign, TestMethod,
    TwoLookDesign,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::python::{field, run_reference};

const REFERENCE: &str = r#"
from scipy import integrate, optimize
def box(c1, c2, rho):
    s = math.sqrt(1 - rho * rho)
    f = lambda z: stats.norm.pdf(z) * (stats.norm.sf((-c2 - rho * z) / s) - stats.norm.sf((c2 - rho * z) / s))
    return integrate.quad(f, -c1, c1, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
def mvn_box(c1, c2, rho):
    F = lambda x, y: stats.multivariate_normal.cdf([x, y], mean=[0, 0], cov=[[1, rho], [rho, 1]], abseps=1e-12, releps=1e-12)
    return F(c1, c2) - F(-c1, c2) - F(c1, -c2) + F(-c1, -c2)
def run(case):
    if case["box"]:
        return {"quad": box(case["c1"], case["c2"], case["rho"]), "mvn": mvn_box(case["c1"], case["c2"], case["rho"])}
    t, alpha, delta = case["t"], case["alpha"], case["delta"]
    ratio = t ** (delta - 0.5)
    C = optimize.brentq(lambda C: box(C * ratio, C, math.sqrt(t)) - (1 - alpha), 0.1, 10, xtol=1e-14)
    return {"c1": C * ratio, "c2": C}
"#;

fn design(boundary: Boundary, first: u32, max: u32) -> TwoLookDesign {
    TwoLookDesign::new(boundary, first, max).expect("valid design")
}

#[test]
fn the_box_probability_agrees_with_scipy() {
    let cases: Vec<(f64, f64, f64)> = vec![
        (2.178, 2.178, 0.5_f64.sqrt()),
        (2.797, 1.977, 0.5_f64.sqrt()),
        (1.0, 3.0, 0.2),
        (3.5, 2.0, 0.95),
        (2.5, 2.4, 0.999_f64.sqrt()),
        (0.3, 0.4, -0.6),
        (5.0, 5.0, 0.3),
    ];
    let inputs: Vec<_> = cases
        .iter()
        .map(|(c1, c2, rho)| json!({"box": true, "c1": c1, "c2": c2, "rho": rho}))
        .collect();
    let (expected, version) = run_reference(REFERENCE, &inputs);
    for ((c1, c2, rho), reference) in cases.iter().zip(&expected) {
        let ours = bivariate_normal_box(*c1, *c2, *rho);
        let quad = field(reference, "quad");
        let mvn = field(reference, "mvn");
        assert!(
            (ours - quad).abs() < 1e-10,
            "box({c1}, {c2}, {rho}) = {ours}, scipy {version} quad {quad}"
        );
        assert!(
            (ours - mvn).abs() < 1e-7,
            "box({c1}, {c2}, {rho}) = {ours}, scipy {version} multivariate_normal {mvn}"
        );
    }
}

#[test]
fn two_equal_looks_at_alpha_005_match_the_published_tables() {
    let pocock = design(Boundary::Pocock, 5, 10);
    let [pocock_c, c2] = pocock.critical_values(0.05).expect("boundary");
    assert!(
        (pocock_c - 2.178).abs() < 5e-4 && pocock_c == c2,
        "Pocock {pocock_c}, {c2}"
    );
    let [n1, n2] = pocock.nominal_levels(0.05).expect("levels");
    assert!(
        (n1 - 0.0294).abs() < 5e-5 && n1 == n2,
        "Pocock nominal {n1}, {n2}"
    );

    let obf = design(Boundary::ObrienFleming, 5, 10);
    let [c1, c2] = obf.critical_values(0.05).expect("boundary");
    assert!((c1 - 2.797).abs() < 5e-4, "O'Brien–Fleming first {c1}");
    assert!((c2 - 1.977).abs() < 5e-4, "O'Brien–Fleming second {c2}");
    let [n1, n2] = obf.nominal_levels(0.05).expect("levels");
    assert!((n1 - 0.0052).abs() < 5e-5, "O'Brien–Fleming nominal {n1}");
    assert!((n2 - 0.0480).abs() < 5e-5, "O'Brien–Fleming nominal {n2}");
    eprintln!(
        "2 equal looks at 0.05: Pocock c = {pocock_c:.6}; O'Brien–Fleming c = {c1:.6}, {c2:.6}, nominal {n1:.6}, {n2:.6}"
    );
}

#[test]
fn boundaries_agree_with_scipy_at_other_looks_and_levels() {
    let cases = [
        (Boundary::Pocock, 5, 10, 0.05),
        (Boundary::ObrienFleming, 5, 10, 0.05),
        (Boundary::ObrienFleming, 4, 12, 0.05),
        (Boundary::Pocock, 3, 20, 0.01),
        (Boundary::ObrienFleming, 9, 10, 0.1),
        (Boundary::Pocock, 1, 2, 0.025),
        (Boundary::ObrienFleming, 30, 1000, 0.05),
    ];
    let inputs: Vec<_> = cases
        .iter()
        .map(|(boundary, first, max, alpha)| {
            let delta = if *boundary == Boundary::Pocock { 0.5 } else { 0.0 };
            json!({"box": false, "t": f64::from(*first) / f64::from(*max), "alpha": alpha, "delta": delta})
        })
        .collect();
    let (expected, version) = run_reference(REFERENCE, &inputs);
    for ((boundary, first, max, alpha), reference) in cases.iter().zip(&expected) {
        let [c1, c2] = design(*boundary, *first, *max)
            .critical_values(*alpha)
            .expect("boundary");
        for (ours, theirs) in [(c1, field(reference, "c1")), (c2, field(reference, "c2"))] {
            assert!(
                (ours - theirs).abs() < 1e-8,
                "{boundary:?} {first}/{max} at {alpha}: {ours} vs scipy {version} {theirs}"
            );
        }
    }
}

#[test]
fn the_sequential_p_value_rejects_exactly_where_the_boundaries_do() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for boundary in [Boundary::ObrienFleming, Boundary::Pocock] {
        let design = design(boundary, 5, 12);
        let levels: Vec<(f64, [f64; 2])> = [0.01, 0.025, 0.05, 0.1]
            .into_iter()
            .map(|alpha| (alpha, design.nominal_levels(alpha).expect("levels")))
            .collect();
        for _ in 0..2_000 {
            let p1: f64 = rng.random::<f64>().powi(3);
            let p2: f64 = rng.random::<f64>().powi(3);
            let first_only = design.sequential_p_value(Some(p1), None).expect("p");
            let both = design.sequential_p_value(Some(p1), Some(p2)).expect("p");
            assert!(both <= first_only && first_only >= p1, "{p1} {p2}");
            for (alpha, [nominal1, nominal2]) in &levels {
                // Away from the boundary itself (bisection precision).
                if (p1 / nominal1 - 1.0).abs() < 1e-9 || (p2 / nominal2 - 1.0).abs() < 1e-9 {
                    continue;
                }
                assert_eq!(first_only < *alpha, p1 < *nominal1, "{boundary:?} p1 {p1}");
                assert_eq!(
                    both < *alpha,
                    p1 < *nominal1 || p2 < *nominal2,
                    "{boundary:?} p1 {p1} p2 {p2} at {alpha}"
                );
            }
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn paired_p(a: &[f64], b: &[f64]) -> f64 {
    compare(a, b, TestMethod::PairedT, 0.95)
        .expect("paired comparison")
        .p_value
        .expect("continuous data: the test is defined")
}

const DRAWS: usize = 20_000;

/// The rejection rates under the null of (the design, testing twice at alpha, and the
/// design with a second look sized from the first look's effect), with paired t-tests
/// on 5 and then up to 10 seeds.
fn null_rejection_rates(boundary: Boundary, seed: u64) -> [f64; 3] {
    let (first, max) = (5_usize, 10_usize);
    let design = design(boundary, first as u32, max as u32);
    let [level1, level2] = design.nominal_levels(0.05).expect("levels");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rejected = [0_usize; 3];
    for _ in 0..DRAWS {
        // Per-seed effect shared by both methods, no true difference.
        let (a, b): (Vec<f64>, Vec<f64>) = (0..max)
            .map(|_| {
                let seed_effect = normal(&mut rng);
                (
                    seed_effect + normal(&mut rng),
                    seed_effect + normal(&mut rng),
                )
            })
            .unzip();
        let p1 = paired_p(&a[..first], &b[..first]);
        let p_max = paired_p(&a, &b);
        rejected[0] += usize::from(p1 < level1 || p_max < level2);
        rejected[1] += usize::from(p1 < 0.05 || p_max < 0.05);
        // The second look sized by the seeds needed for the observed effect at 80%
        // power (at least one more seed, at most the maximum).
        let differences: Vec<f64> = a[..first]
            .iter()
            .zip(&b[..first])
            .map(|(x, y)| x - y)
            .collect();
        let mean = differences.iter().sum::<f64>() / first as f64;
        let sd = (differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (first - 1) as f64)
            .sqrt();
        let effect = mean / sd;
        // Most null draws need more than the maximum: one power evaluation says so,
        // and the solver runs only for the others.
        let needed = if t_test_power(PowerDesign::Paired, effect, max as f64, level2) < 0.8 {
            max
        } else {
            required_nobs(PowerDesign::Paired, effect, level2, 0.8)
                .map_or(max, |n| (n - 1e-9).ceil() as usize)
                .clamp(first + 1, max)
        };
        let p_needed = paired_p(&a[..needed], &b[..needed]);
        rejected[2] += usize::from(p1 < level1 || p_needed < level2);
    }
    rejected.map(|count| count as f64 / DRAWS as f64)
}

#[test]
fn under_the_null_two_looks_keep_the_error_rate_and_testing_twice_does_not() {
    for (boundary, seed) in [(Boundary::ObrienFleming, 2026), (Boundary::Pocock, 2027)] {
        let [design, naive, sized] = null_rejection_rates(boundary, seed);
        eprintln!(
            "{}: 5 then 10 seeds under the null, {DRAWS} experiments: the design rejects {design:.4}, testing twice at 0.05 {naive:.4}, a second look sized from the first look's effect {sized:.4}",
            boundary.label()
        );
        assert!((design - 0.05).abs() <= 0.01, "{boundary:?}: {design}");
        assert!(naive > 0.06, "testing twice at 0.05: {naive}");
        // Sizing the second look from the first look's effect (more seeds when it is
        // small) breaks the O'Brien–Fleming levels (measured 0.061, seven standard
        // errors above 0.05); Pocock's happen to hold at 5 then 10 (0.051): the design
        // always runs its second look to the declared maximum.
        if boundary == Boundary::ObrienFleming {
            assert!(sized > 0.056, "a data-sized second look: {sized}");
        }
    }
}
