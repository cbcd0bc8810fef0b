//! The one error type of this crate.
//!
//! Statistical degeneracy (too few values, zero variance) is never an error:
//! the tests return scipy's NaN/inf and [`crate::compare`] turns those into
//! `None` plus a note. Errors are reserved for calls that cannot mean anything,
//! so the caller knows to fix the call rather than the data.

use thiserror::Error;

/// Why a statistics call was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// Paired data needs one value per seed on both sides.
    #[error("paired samples differ in length ({a} vs {b}); pass one value per seed on each side")]
    PairedLengthMismatch { a: usize, b: usize },
    /// The confidence level must lie strictly between 0 and 1.
    #[error("confidence level {0} is outside (0, 1); use e.g. 0.95")]
    InvalidConfidence(f64),
    /// A two-look design's second look must come after its first.
    #[error("a two-look design needs 0 < first look ({first_look}) < maximum ({max}); declare a maximum above the first look's seeds")]
    InvalidDesign { first_look: u32, max: u32 },
}
