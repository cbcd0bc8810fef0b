//! Statistics for expcluster's stage summaries, in pure Rust.
//!
//! After every stage the coordinator turns per-seed values into descriptive
//! summaries and pairwise comparisons (DESIGN §5). The numbers must agree
//! with scipy, so each test here mirrors one scipy function, *including its
//! method-selection rules and degenerate-case answers*, and the crate's tests
//! check every statistic against scipy and numpy to 1e-9.
//!
//! Two layers:
//! - the scipy mirrors ([`welch_t_test`], [`mann_whitney_u`],
//!   [`paired_t_test`], [`wilcoxon_signed_rank`]) return plain `f64` fields
//!   that are NaN or ±inf exactly where scipy's are;
//! - [`describe`] and [`compare`] are what summaries store: undefined values
//!   are `None` (JSON `null`) and [`Comparison::notes`] says why. A
//!   comparison runs the one test it is given ([`TestMethod`]) and reports the
//!   interval that test implies ([`Interval`]: paired t, Welch–Satterthwaite,
//!   Hodges–Lehmann), so the interval excludes 0 exactly when the p-value is
//!   below its level; [`power_analysis`] says what an inconclusive one could
//!   detect (statsmodels' `TTestPower` / `TTestIndPower`), and
//!   [`TwoLookDesign`] the boundaries of a second look at more seeds
//!   (O'Brien–Fleming or Pocock, declared before the first look).
//!
//! There is no bootstrap: at the few seeds an experiment runs, a percentile
//! bootstrap covers far less than its nominal level, and the interval beside
//! a test must be the one that test implies.
//!
//! Everywhere, non-finite inputs are failed seeds: they are dropped (the
//! whole pair for paired data) and counted, never propagated. The deliberate
//! differences from scipy/numpy, all at degenerate inputs, are:
//! - a sample of identical values has variance exactly 0 (numpy may leave a
//!   rounding residue, see `sample.rs`), and its 95% interval is the point
//!   itself where scipy's `t.interval` returns NaN for a zero scale;
//! - empty samples give NaN results instead of scipy's exception
//!   (`mannwhitneyu`) — `compare` never calls a test on fewer than 2 values;
//! - Holm ignores NaN p-values instead of assuming there are none.

mod compare;
mod correction;
mod descriptive;
mod distributions;
mod effect_size;
mod error;
mod hodges_lehmann;
mod mann_whitney;
mod method;
mod noncentral_t;
mod parametric;
mod power;
mod ranks;
mod sample;
mod sequential;
mod wilcoxon;

pub use compare::{compare, Comparison};
pub use correction::holm_bonferroni;
pub use descriptive::{describe, percentile_linear, Descriptive};
pub use effect_size::{cohens_d, hedges_g};
pub use error::StatsError;
pub use mann_whitney::{mann_whitney_u, MannWhitneyResult};
pub use method::{Interval, IntervalMethod, TestMethod};
pub use parametric::{paired_t_test, welch_t_test, TTestResult};
pub use power::{
    detectable_effect, power_analysis, required_nobs, t_test_power, PowerAnalysis, PowerDesign,
};
pub use ranks::RankTestMethod;
pub use sequential::{bivariate_normal_box, Boundary, TwoLookDesign};
pub use wilcoxon::{wilcoxon_signed_rank, WilcoxonResult};
