//! Two looks at a growing experiment without inflating the false-positive rate: a
//! group-sequential design declared before the first look.
//!
//! Testing a claim on n₁ seeds, then adding seeds and testing again at the same
//! alpha, rejects a true null more often than alpha (looking twice). A two-look
//! group-sequential design fixes both looks in advance: the first after n₁ seeds,
//! the second (final) after the declared maximum N, with critical values c₁, c₂ for
//! the standardised statistics Z₁, Z₂ (correlation √(n₁/N) under the null) chosen so
//! that P(|Z₁| ≥ c₁ or |Z₂| ≥ c₂) = alpha. The boundaries are Wang and Tsiatis's
//! family c_k = C · t_k^(Δ − 1/2) at information fractions t₁ = n₁/N, t₂ = 1:
//! - **O'Brien–Fleming** (Δ = 0): a strict first look, nearly the whole alpha at
//!   the second (2 equal looks at 0.05: nominal 0.0052, then 0.0480);
//! - **Pocock** (Δ = 1/2): the same nominal level at both looks (0.0294 each).
//!
//! A test's p-value is compared with the look's nominal level 2·(1 − Φ(c_k)). The
//! second look must run to N whatever the first look showed: choosing its size from
//! the first look's effect (more seeds when the effect is small) raises the
//! false-positive rate of these boundaries (measured in the tests: 0.066 instead of
//! 0.05 for 5 then up to 10 seeds).
//!
//! [`TwoLookDesign::sequential_p_value`] is the smallest alpha at which the design
//! would have rejected by the current look (the repeated p-value), so a design can
//! sit inside Holm's procedure exactly as a plain p-value does.

use serde::{Deserialize, Serialize};

use crate::distributions::normal_sf;
use crate::StatsError;

/// The shape of the two looks' critical values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// O'Brien–Fleming: c_k = C / √t_k.
    ObrienFleming,
    /// Pocock: c_k = C.
    Pocock,
}

impl Boundary {
    /// Wang–Tsiatis's Δ: c_k = C · t_k^(Δ − 1/2).
    fn delta(self) -> f64 {
        match self {
            Boundary::ObrienFleming => 0.0,
            Boundary::Pocock => 0.5,
        }
    }

    /// Words for a sentence: `O'Brien–Fleming`, `Pocock`.
    pub fn label(self) -> &'static str {
        match self {
            Boundary::ObrienFleming => "O'Brien–Fleming",
            Boundary::Pocock => "Pocock",
        }
    }

    /// The config's spelling: `obrien_fleming`, `pocock`.
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::ObrienFleming => "obrien_fleming",
            Boundary::Pocock => "pocock",
        }
    }
}

/// Two looks, after `first_look` and after `max` observations (seeds, or pairs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TwoLookDesign {
    pub boundary: Boundary,
    pub first_look: u32,
    pub max: u32,
}

impl TwoLookDesign {
    /// A design whose second look comes after the first: `0 < first_look < max`.
    pub fn new(boundary: Boundary, first_look: u32, max: u32) -> Result<Self, StatsError> {
        if first_look == 0 || max <= first_look {
            return Err(StatsError::InvalidDesign { first_look, max });
        }
        Ok(TwoLookDesign {
            boundary,
            first_look,
            max,
        })
    }

    /// t₁ = n₁ / N, the first look's share of the information.
    pub fn information_fraction(&self) -> f64 {
        f64::from(self.first_look) / f64::from(self.max)
    }

    /// The critical values (c₁, c₂) of |Z| at the two looks for an overall
    /// two-sided level `alpha`; `None` unless 0 < alpha < 1.
    pub fn critical_values(&self, alpha: f64) -> Option<[f64; 2]> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return None;
        }
        // The probability of no rejection falls as C falls: bisect C.
        let (mut low, mut high) = (0.0_f64, 40.0_f64);
        for _ in 0..200 {
            let middle = 0.5 * (low + high);
            if middle <= low || middle >= high {
                break;
            }
            if self.no_rejection(middle) < 1.0 - alpha {
                low = middle;
            } else {
                high = middle;
            }
        }
        let scale = 0.5 * (low + high);
        Some(self.critical_at(scale))
    }

    /// The nominal two-sided levels 2·(1 − Φ(c_k)) a test's p-value is compared with
    /// at each look.
    pub fn nominal_levels(&self, alpha: f64) -> Option<[f64; 2]> {
        self.critical_values(alpha)
            .map(|c| c.map(|value| 2.0 * normal_sf(value)))
    }

    /// The smallest overall alpha at which the design rejects by the last look given:
    /// `p_first` is the first look's two-sided p-value, `p_second` the second's (absent
    /// at the first look). Rejecting at level alpha is exactly `result < alpha`, for
    /// every alpha at once, so Holm's procedure can take it as a p-value. A look
    /// without a p-value (its test undefined) rejects nothing; `None` when neither
    /// has one.
    pub fn sequential_p_value(&self, p_first: Option<f64>, p_second: Option<f64>) -> Option<f64> {
        let first = p_first
            .filter(|p| !p.is_nan())
            .map(|p| self.alpha_with_critical(0, p));
        let second = p_second
            .filter(|p| !p.is_nan())
            .map(|p| self.alpha_with_critical(1, p));
        match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (one, other) => one.or(other),
        }
    }

    /// The alpha whose critical value at look `look` is the |z| of two-sided p-value
    /// `p`: 1 − P(no rejection) with C scaled so that c_look = |z|.
    fn alpha_with_critical(&self, look: usize, p: f64) -> f64 {
        if p >= 1.0 {
            return 1.0;
        }
        if p <= 0.0 {
            return 0.0;
        }
        let z = normal_isf(p / 2.0);
        let scale = z / self.critical_at(1.0)[look];
        (1.0 - self.no_rejection(scale)).clamp(0.0, 1.0)
    }

    /// (c₁, c₂) for the scale C.
    fn critical_at(&self, scale: f64) -> [f64; 2] {
        let exponent = self.boundary.delta() - 0.5;
        [scale * self.information_fraction().powf(exponent), scale]
    }

    /// P(|Z₁| < c₁, |Z₂| < c₂) under the null, for the scale C.
    fn no_rejection(&self, scale: f64) -> f64 {
        let [c1, c2] = self.critical_at(scale);
        bivariate_normal_box(c1, c2, self.information_fraction().sqrt())
    }
}

/// P(|Z₁| < c₁, |Z₂| < c₂) for standard normals with correlation `rho` (|rho| < 1):
/// ∫ φ(z) [Φ((c₂ − ρz)/s) − Φ((−c₂ − ρz)/s)] dz over (−c₁, c₁), s = √(1 − ρ²), by
/// Gauss–Legendre on panels no wider than s/4, so that the inner Φ's steepest
/// stretch (width s) spans several panels; scipy's `multivariate_normal.cdf` is the
/// reference in the tests.
pub fn bivariate_normal_box(c1: f64, c2: f64, rho: f64) -> f64 {
    if !(c1 > 0.0 && c2 > 0.0) {
        return 0.0;
    }
    if rho.is_nan() || rho.abs() >= 1.0 {
        return f64::NAN;
    }
    let spread = (1.0 - rho * rho).sqrt();
    let inner = |z: f64| {
        let centre = rho * z;
        // Φ(b) − Φ(a) as a difference of upper tails keeps its digits far out.
        normal_sf((-c2 - centre) / spread) - normal_sf((c2 - centre) / spread)
    };
    let density = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    // Beyond 9 sd the normal density is below 1e-18.
    let limit = c1.min(9.0);
    let panel_width = (spread / 4.0).min(0.25);
    let panels = ((2.0 * limit / panel_width).ceil() as usize).clamp(8, 20_000);
    let width = 2.0 * limit / panels as f64;
    let mut total = 0.0;
    for panel in 0..panels {
        let centre = -limit + (panel as f64 + 0.5) * width;
        for (node, weight) in GAUSS_LEGENDRE_10 {
            let z = centre + 0.5 * width * node;
            total += weight * density(z) * inner(z);
        }
    }
    total * 0.5 * width
}

/// The upper-tail normal quantile: the z with P(Z ≥ z) = q, for 0 < q < 1; Newton
/// steps on the survival function polish a rational first guess.
pub(crate) fn normal_isf(q: f64) -> f64 {
    if !(q > 0.0 && q < 1.0) {
        return f64::NAN;
    }
    if q > 0.5 {
        return -normal_isf(1.0 - q);
    }
    // Abramowitz & Stegun 26.2.23 (error < 4.5e-4), then Newton.
    let t = (-2.0 * q.ln()).sqrt();
    let mut z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    for _ in 0..50 {
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        if density <= 0.0 {
            break;
        }
        let step = (normal_sf(z) - q) / density;
        z += step;
        if step.abs() <= 1e-15 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// Nodes and weights of 10-point Gauss–Legendre on (−1, 1).
const GAUSS_LEGENDRE_10: [(f64, f64); 10] = [
    (-0.973_906_528_517_171_7, 0.066_671_344_308_688_14),
    (-0.865_063_366_688_984_5, 0.149_451_349_150_580_6),
    (-0.679_409_568_299_024_4, 0.219_086_362_515_982_04),
    (-0.433_395_394_129_247_2, 0.269_266_719_309_996_35),
    (-0.148_874_338_981_631_2, 0.295_524_224_714_752_87),
    (0.148_874_338_981_631_2, 0.295_524_224_714_752_87),
    (0.433_395_394_129_247_2, 0.269_266_719_309_996_35),
    (0.679_409_568_299_024_4, 0.219_086_362_515_982_04),
    (0.865_063_366_688_984_5, 0.149_451_349_150_580_6),
    (0.973_906_528_517_171_7, 0.066_671_344_308_688_14),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_quantile_inverts_the_survival_function() {
        for q in [1e-12, 1e-6, 0.001, 0.025, 0.2, 0.5, 0.7, 0.99] {
            let z = normal_isf(q);
            assert!(
                ((normal_sf(z) - q) / q).abs() < 1e-12,
                "q {q}: z {z}, sf {}",
                normal_sf(z)
            );
        }
        // statrs' erfc, which the survival function uses, is good to about 1e-12.
        assert!((normal_isf(0.025) - 1.959_963_984_540_054).abs() < 1e-10);
    }

    #[test]
    fn independent_and_degenerate_boxes() {
        // ρ = 0: the product of the two central probabilities.
        let central = |c: f64| 1.0 - 2.0 * normal_sf(c);
        let product = central(1.5) * central(2.2);
        assert!((bivariate_normal_box(1.5, 2.2, 0.0) - product).abs() < 1e-10);
        assert_eq!(bivariate_normal_box(0.0, 2.0, 0.5), 0.0);
        assert!(bivariate_normal_box(1.0, 2.0, 1.0).is_nan());
    }

    #[test]
    fn a_design_needs_a_second_look_after_the_first() {
        assert!(TwoLookDesign::new(Boundary::Pocock, 5, 5).is_err());
        assert!(TwoLookDesign::new(Boundary::Pocock, 0, 5).is_err());
        let design = TwoLookDesign::new(Boundary::Pocock, 5, 10).expect("valid");
        assert!(design.critical_values(0.0).is_none());
        assert!(design.critical_values(1.0).is_none());
    }
}
