//! The inputs every agreement test runs on: seeded random samples of sizes
//! 2..=30 in four flavours (continuous, rounded so that ties occur, small
//! integers with heavy ties, and continuous with failed seeds), plus
//! hand-picked edge cases for n = 1 and 2, zero variance, identical samples,
//! signed zeros, all-tied data and extreme separation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::python::encode_all;

pub struct Case {
    pub label: String,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl Case {
    pub fn new(label: impl Into<String>, a: Vec<f64>, b: Vec<f64>) -> Case {
        Case {
            label: label.into(),
            a,
            b,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "a": encode_all(&self.a), "b": encode_all(&self.b) })
    }
}

const RANDOM_CASES: usize = 48;

#[derive(Clone, Copy)]
enum Flavour {
    Continuous,
    Rounded,
    SmallIntegers,
    WithFailedSeeds,
}

const FLAVOURS: [Flavour; 4] = [
    Flavour::Continuous,
    Flavour::Rounded,
    Flavour::SmallIntegers,
    Flavour::WithFailedSeeds,
];

fn flavour_name(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Continuous => "continuous",
        Flavour::Rounded => "rounded",
        Flavour::SmallIntegers => "small-integers",
        Flavour::WithFailedSeeds => "failed-seeds",
    }
}

/// A roughly normal value (sum of three uniforms), centred on `centre`.
fn bell(rng: &mut ChaCha8Rng, centre: f64, scale: f64) -> f64 {
    let sum: f64 = (0..3).map(|_| rng.random::<f64>()).sum();
    centre + scale * (sum - 1.5)
}

fn sample(rng: &mut ChaCha8Rng, flavour: Flavour, n: usize, centre: f64) -> Vec<f64> {
    let mut values: Vec<f64> = (0..n)
        .map(|_| match flavour {
            Flavour::Continuous | Flavour::WithFailedSeeds => bell(rng, centre, 1.0),
            Flavour::Rounded => (bell(rng, centre, 1.0) * 10.0).round() / 10.0,
            Flavour::SmallIntegers => f64::from(rng.random_range(0..4_i32)) + centre.round(),
        })
        .collect();
    if let Flavour::WithFailedSeeds = flavour {
        // Keep at least two finite values so every reference is defined.
        let failures = rng.random_range(1..=(n / 3).max(1));
        for _ in 0..failures.min(n.saturating_sub(2)) {
            let index = rng.random_range(0..n);
            values[index] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.random_range(0..3)];
        }
    }
    values
}

fn random_cases(seed: u64, paired: bool) -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..RANDOM_CASES)
        .map(|i| {
            let flavour = FLAVOURS[i % FLAVOURS.len()];
            let n_a = rng.random_range(2..=30);
            let n_b = if paired {
                n_a
            } else {
                rng.random_range(2..=30)
            };
            let shift = rng.random_range(-1.0..1.0);
            let a = sample(&mut rng, flavour, n_a, 0.0);
            let b = if paired {
                // Correlated pairs, like two methods run on the same seeds.
                let noise = sample(&mut rng, flavour, n_a, shift);
                a.iter().zip(&noise).map(|(x, e)| x + 0.5 * e).collect()
            } else {
                sample(&mut rng, flavour, n_b, shift)
            };
            Case::new(
                format!("random #{i} ({}, {n_a} vs {n_b})", flavour_name(flavour)),
                a,
                b,
            )
        })
        .collect()
}

fn spread(n: usize, start: f64, step: f64) -> Vec<f64> {
    (0..n).map(|i| start + step * i as f64).collect()
}

/// Two independent samples, each with at least one finite value.
pub fn unpaired() -> Vec<Case> {
    let nan = f64::NAN;
    let mut cases = random_cases(17, false);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    cases.extend([
        Case::new("n = 2 each", vec![0.3, 1.7], vec![2.2, 0.9]),
        Case::new("n = 1 vs 3", vec![0.2], vec![0.1, 0.5, 0.9]),
        Case::new("n = 1 each", vec![1.0], vec![2.0]),
        Case::new(
            "identical samples",
            vec![0.81, 0.79, 0.83, 0.8],
            vec![0.81, 0.79, 0.83, 0.8],
        ),
        Case::new("both constant, equal", vec![0.5; 4], vec![0.5; 5]),
        Case::new("both constant, different", vec![0.5; 4], vec![0.75; 3]),
        Case::new("one constant", vec![0.5; 5], vec![0.4, 0.6, 0.7]),
        Case::new("all tied", vec![1.0, 1.0, 1.0], vec![1.0, 1.0]),
        Case::new("n = 2, all tied", vec![3.0, 3.0], vec![3.0, 3.0]),
        Case::new(
            "failed seeds",
            vec![nan, 0.7, 0.8, f64::INFINITY, 0.75],
            vec![0.6, nan, 0.65],
        ),
        Case::new("signed zeros tie", vec![-0.0, 1.0, 2.0], vec![0.0, 3.0]),
        Case::new(
            "exact, 3 vs 200",
            (0..3).map(|_| bell(&mut rng, 0.4, 1.0)).collect(),
            (0..200).map(|_| bell(&mut rng, 0.0, 1.0)).collect(),
        ),
        Case::new(
            "asymptotic, 9 vs 9, no ties",
            spread(9, 0.05, 0.31),
            spread(9, 0.2, 0.29),
        ),
        Case::new(
            "separated, 8 vs 30 (exact)",
            spread(8, 100.0, 1.0),
            spread(30, 0.0, 1.0),
        ),
        Case::new(
            "separated, 20 vs 25",
            spread(20, 1.0, 1.0),
            spread(25, 101.0, 1.0),
        ),
        Case::new(
            "huge t",
            vec![1000.0, 1000.001, 999.999, 1000.0005],
            vec![0.0, 0.001, -0.001, 0.0005],
        ),
    ]);
    cases
}

/// Paired samples (equal lengths), at least one complete pair each.
pub fn paired() -> Vec<Case> {
    let nan = f64::NAN;
    let mut cases = random_cases(23, true);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let continuous_60: Vec<f64> = (0..60).map(|_| bell(&mut rng, 0.0, 1.0)).collect();
    let shifted_60: Vec<f64> = continuous_60
        .iter()
        .map(|x| x + bell(&mut rng, 0.1, 1.0))
        .collect();
    let continuous_50: Vec<f64> = (0..50).map(|_| bell(&mut rng, 0.0, 1.0)).collect();
    let shifted_50: Vec<f64> = continuous_50
        .iter()
        .map(|x| x + bell(&mut rng, 0.3, 1.0))
        .collect();
    let zeros_mix = |n: usize| -> (Vec<f64>, Vec<f64>) {
        let a = spread(n, 1.0, 0.5);
        let b = a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if i % 3 == 0 {
                    *x
                } else {
                    x - 0.25 * (i % 5) as f64 + 0.5
                }
            })
            .collect();
        (a, b)
    };
    let (zeros_a_10, zeros_b_10) = zeros_mix(10);
    let (zeros_a_20, zeros_b_20) = zeros_mix(20);
    cases.extend([
        Case::new("n = 1", vec![1.0], vec![2.0]),
        Case::new("n = 2", vec![1.0, 2.0], vec![0.5, 1.0]),
        Case::new(
            "identical, n = 5 (permutation)",
            spread(5, 0.1, 0.2),
            spread(5, 0.1, 0.2),
        ),
        Case::new(
            "identical, n = 20 (asymptotic)",
            spread(20, 0.1, 0.2),
            spread(20, 0.1, 0.2),
        ),
        Case::new(
            "constant difference",
            spread(6, 1.0, 0.25),
            spread(6, 0.5, 0.25),
        ),
        Case::new("zeros, n = 10", zeros_a_10, zeros_b_10),
        Case::new("zeros, n = 20", zeros_a_20, zeros_b_20),
        Case::new(
            "tied magnitudes",
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            vec![0.0, 3.0, 1.0, 6.0, 2.0, 5.0, 7.5],
        ),
        Case::new("n = 50, exact", continuous_50, shifted_50),
        Case::new("n = 60, asymptotic", continuous_60, shifted_60),
        Case::new(
            "failed seeds drop pairs",
            vec![0.7, nan, 0.9, 0.8, 0.95, 0.6],
            vec![0.65, 0.7, 0.85, nan, 0.9, 0.62],
        ),
    ]);
    cases
}

pub fn to_json(cases: &[Case]) -> Vec<Value> {
    cases.iter().map(Case::to_json).collect()
}
