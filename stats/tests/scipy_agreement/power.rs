//! Power of the t-tests against statsmodels' `TTestPower` (paired / one
//! sample) and `TTestIndPower` (two samples): the power itself to 1e-6, and
//! the effect detectable at 80% power and the observations needed for an
//! effect as roots of statsmodels' own power function (its power there is 0.8
//! to 1e-9), equal to its `solve_power` to 1e-6 wherever that converged.
//!
//! `solve_power` does not always converge: at n = 2 or 3 and small alpha it
//! returns its bracket's end (effect 10) or stops with its power 0.03 away
//! from the target, and elsewhere it stops about 1e-6 short in power. A
//! solution is therefore checked by what statsmodels' power says at it.

use expcluster_stats::{
    detectable_effect, power_analysis, required_nobs, t_test_power, PowerDesign, TestMethod,
};
use serde_json::{json, Value};

use crate::python::{decode, encode, run_reference};

const TOLERANCE: f64 = 1e-6;
/// statsmodels' power at our solutions must be the target to this.
const ROOT_TOLERANCE: f64 = 1e-9;

const REFERENCE: &str = r#"
from statsmodels.stats.power import TTestPower, TTestIndPower
def run(case):
    d, n, alpha, ratio = case["effect"], case["nobs"], case["alpha"], case["ratio"]
    if ratio is None:
        tool, key, extra = TTestPower(), "nobs", {}
    else:
        tool, key, extra = TTestIndPower(), "nobs1", {"ratio": ratio}
    power = lambda effect, nobs: float(np.squeeze(tool.power(effect, nobs, alpha, **extra)))
    def bounds(effect, nobs):
        p = power(effect, nobs)
        if np.isfinite(p):
            return [p, p]
        if ratio is None:
            df, scale = nobs - 1, np.sqrt(nobs)
        else:
            df, scale = nobs * (1 + ratio) - 2, np.sqrt(1 / (1 / nobs + 1 / (nobs * ratio)))
        nc = abs(effect) * scale
        upper = 1 - special.nctdtr(df, nc, stats.t.isf(alpha / 2, df))
        return [upper, upper + special.ndtr(-nc)]
    solve = lambda **kw: float(np.squeeze(tool.solve_power(alpha=alpha, power=0.8, **kw, **extra)))
    out = {"power": bounds(d, n), "power_nan": not np.isfinite(power(d, n))}
    theirs = solve(effect_size=None, **{key: n})
    out["effect"] = theirs
    out["effect_converged"] = abs(power(theirs, n) - 0.8) < 1e-8
    out["power_at_our_effect"] = bounds(case["our_effect"], n)
    if case["our_nobs"] is not None:
        theirs = solve(effect_size=d, **{key: None})
        out["nobs"] = theirs
        out["nobs_converged"] = abs(power(d, theirs) - 0.8) < 1e-8
        out["power_at_our_nobs"] = bounds(d, case["our_nobs"])
    return out
"#;

struct Case {
    design: PowerDesign,
    effect: f64,
    nobs: f64,
    alpha: f64,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for design in [
        PowerDesign::Paired,
        PowerDesign::TwoSample { ratio: 1.0 },
        PowerDesign::TwoSample { ratio: 1.5 },
    ] {
        for nobs in [2.0, 3.0, 4.0, 5.0, 10.0, 30.0, 100.0] {
            for effect in [0.1, 0.5, 1.2, 3.0, -0.8] {
                for alpha in [0.05, 0.05 / 3.0, 0.01] {
                    out.push(Case {
                        design,
                        effect,
                        nobs,
                        alpha,
                    });
                }
            }
        }
    }
    out
}

fn ratio(design: PowerDesign) -> Value {
    match design {
        PowerDesign::Paired => Value::Null,
        PowerDesign::TwoSample { ratio } => json!(ratio),
    }
}

/// `value <= tolerance`, false for NaN (a NaN deviation is a failure).
fn within(value: f64, tolerance: f64) -> bool {
    value <= tolerance
}

/// A reference `[low, high]` pair (equal unless statsmodels gave NaN).
fn bounds(pair: &Value) -> (f64, f64) {
    let end = |i: usize| decode(&pair[i]).unwrap_or(f64::NAN);
    (end(0), end(1))
}

/// Largest deviations seen, for the report.
#[derive(Default)]
struct Worst {
    power: f64,
    root_residual: f64,
    effect_vs_solve_power: f64,
    nobs_vs_solve_power: f64,
}

#[test]
fn power_effect_and_sample_size_match_statsmodels() {
    let cases = cases();
    let ours: Vec<(f64, Option<f64>)> = cases
        .iter()
        .map(|case| {
            let effect = detectable_effect(case.design, case.nobs, case.alpha, 0.8)
                .expect("0.8 > alpha and df > 0");
            // Solving for n is slow in statsmodels; once per design and effect.
            let nobs = (case.nobs == 4.0)
                .then(|| required_nobs(case.design, case.effect, case.alpha, 0.8))
                .flatten();
            (effect, nobs)
        })
        .collect();
    let inputs: Vec<Value> = cases
        .iter()
        .zip(&ours)
        .map(|(case, (effect, nobs))| {
            json!({"effect": case.effect, "nobs": case.nobs, "alpha": case.alpha,
                   "ratio": ratio(case.design), "our_effect": effect,
                   "our_nobs": nobs.map(encode)})
        })
        .collect();
    let (expected, _) = run_reference(REFERENCE, &inputs);
    let mut failures = Vec::new();
    let mut worst = Worst::default();
    let mut converged = 0;
    let mut bounded = 0;
    for ((case, (effect, nobs)), reference) in cases.iter().zip(&ours).zip(&expected) {
        let label = format!(
            "{:?} d = {} n = {} alpha = {}",
            case.design, case.effect, case.nobs, case.alpha
        );
        let number = |key: &str| decode(&reference[key]).unwrap_or(f64::NAN);
        let power = t_test_power(case.design, case.effect, case.nobs, case.alpha);
        let (low, high) = bounds(&reference["power"]);
        if reference["power_nan"] == json!(true) {
            bounded += 1;
        }
        let deviation = (power - high).max(low - power).max(0.0);
        worst.power = worst.power.max(deviation);
        if !within(deviation, TOLERANCE) {
            failures.push(format!("{label}: power {power} vs [{low}, {high}]"));
        }
        let mut solutions = vec![("effect", *effect, "power_at_our_effect")];
        solutions.extend(nobs.map(|n| ("nobs", n, "power_at_our_nobs")));
        for (what, value, residual_key) in solutions {
            let (low, high) = bounds(&reference[residual_key]);
            let residual = (0.8 - high).max(low - 0.8).max(0.0);
            worst.root_residual = worst.root_residual.max(residual);
            if !within(residual, ROOT_TOLERANCE) {
                failures.push(format!(
                    "{label}: statsmodels' power at our {what} {value} is [{low}, {high}]"
                ));
            }
            if reference[format!("{what}_converged")] != json!(true) {
                continue;
            }
            converged += 1;
            let theirs = number(what);
            let deviation = (value - theirs).abs() / theirs.abs().max(1.0);
            if what == "effect" {
                worst.effect_vs_solve_power = worst.effect_vs_solve_power.max(deviation);
            } else {
                worst.nobs_vs_solve_power = worst.nobs_vs_solve_power.max(deviation);
            }
            if !within(deviation, TOLERANCE) {
                failures.push(format!("{label}: {what} {value} vs solve_power {theirs}"));
            }
        }
    }
    eprintln!(
        "against statsmodels over {} cases ({bounded} bounded where scipy's nctdtr is NaN): \
         power within {:.1e}; its power at our solutions \
         within {:.1e} of 0.8; where solve_power converged ({converged} solutions) the effect \
         within {:.1e} and nobs within {:.1e} (relative)",
        cases.len(),
        worst.power,
        worst.root_residual,
        worst.effect_vs_solve_power,
        worst.nobs_vs_solve_power
    );
    assert!(
        converged > 100,
        "solve_power converged only {converged} times"
    );
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn power_analysis_of_a_paired_comparison() {
    let a = [0.81, 0.83, 0.80, 0.86, f64::NAN];
    let b = [0.80, 0.80, 0.81, 0.83, 0.79];
    let analysis = power_analysis(&a, &b, TestMethod::PairedT, 0.05, 0.8).expect("defined");
    assert_eq!((analysis.design, analysis.nobs), (PowerDesign::Paired, 4.0));
    let differences = [0.01, 0.03, -0.01, 0.03];
    let mean = 0.015;
    let sd = (differences
        .iter()
        .map(|d: &f64| (d - mean).powi(2))
        .sum::<f64>()
        / 3.0)
        .sqrt();
    assert!((analysis.observed_effect - mean / sd).abs() < 1e-9);
    assert!((analysis.scale - sd).abs() < 1e-12);
    let detectable = analysis.detectable_effect.expect("defined");
    assert!(
        (t_test_power(PowerDesign::Paired, detectable, 4.0, 0.05) - 0.8).abs() < 1e-9,
        "{analysis:?}"
    );
    let needed = analysis.nobs_needed.expect("a nonzero effect");
    assert_eq!(analysis.seeds_needed, Some(needed.ceil() as u64));
    assert!(analysis.seeds_needed.expect("some") > 4, "{analysis:?}");
    // No spread, nothing to standardise by.
    assert_eq!(
        power_analysis(&[1.0, 2.0], &[0.5, 1.5], TestMethod::PairedT, 0.05, 0.8),
        None
    );
    assert_eq!(required_nobs(PowerDesign::Paired, 0.0, 0.05, 0.8), None);
}
