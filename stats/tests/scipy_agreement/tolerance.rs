//! The agreement criterion: equal non-finite values, or finite values within
//! a relative 1e-9 (absolute 1e-14 near zero, where rounding in a different
//! summation order is all that separates two correct answers).

pub const RELATIVE: f64 = 1e-9;
const ABSOLUTE_FLOOR: f64 = 1e-14;

pub fn agrees(actual: f64, expected: f64) -> bool {
    if expected.is_nan() || actual.is_nan() {
        return expected.is_nan() && actual.is_nan();
    }
    if expected.is_infinite() || actual.is_infinite() {
        return expected == actual;
    }
    (actual - expected).abs() <= (RELATIVE * expected.abs()).max(ABSOLUTE_FLOOR)
}

/// Collects disagreements so one run reports every failing case at once.
#[derive(Default)]
pub struct Mismatches(Vec<String>);

impl Mismatches {
    pub fn check(&mut self, label: &str, what: &str, actual: f64, expected: f64) {
        if !agrees(actual, expected) {
            self.0.push(format!(
                "{label}: {what} = {actual:e}, scipy/numpy say {expected:e}"
            ));
        }
    }

    pub fn check_option(
        &mut self,
        label: &str,
        what: &str,
        actual: Option<f64>,
        expected: Option<f64>,
    ) {
        match (actual, expected) {
            (Some(a), Some(e)) => self.check(label, what, a, e),
            (None, None) => {}
            _ => self.0.push(format!(
                "{label}: {what} = {actual:?}, reference says {expected:?}"
            )),
        }
    }

    pub fn note(&mut self, message: String) {
        self.0.push(message);
    }

    /// Panics listing every mismatch; `checked` guards against a vacuous pass.
    pub fn assert_none(self, checked: usize, scipy_version: &str) {
        assert!(checked > 0, "no case was compared");
        assert!(
            self.0.is_empty(),
            "{} disagreement(s) with scipy {scipy_version} over {checked} cases:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}
