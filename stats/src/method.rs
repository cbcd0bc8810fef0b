//! Which test a comparison runs and the interval that test implies.
//!
//! A comparison runs one test, fixed before the data by the design (paired
//! when both sides ran the same seeds) or by the config; never the one that
//! happens to give the smaller p-value. Its interval is the set of differences
//! the same test would not reject, so "the interval excludes 0" and "p < 1 -
//! confidence" are one statement:
//! - paired t → Student t interval of the mean paired difference;
//! - Welch → Welch–Satterthwaite t interval of the difference of means;
//! - Mann–Whitney → Hodges–Lehmann shift with its exact or normal interval.

use serde::{Deserialize, Serialize};

/// The test of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    /// Paired t-test on the seeds both sides completed (scipy `ttest_rel`).
    PairedT,
    /// Welch's unequal-variance t-test (scipy `ttest_ind(equal_var=False)`).
    Welch,
    /// Mann–Whitney U (scipy `mannwhitneyu`), unpaired and rank-based.
    MannWhitney,
}

impl TestMethod {
    /// Words for a summary line, e.g. `paired t-test`.
    pub fn label(self) -> &'static str {
        match self {
            TestMethod::PairedT => "paired t-test",
            TestMethod::Welch => "Welch's t-test",
            TestMethod::MannWhitney => "Mann–Whitney U test",
        }
    }

    /// The name summaries and claims print: `paired_t`, `welch`, `mann_whitney`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestMethod::PairedT => "paired_t",
            TestMethod::Welch => "welch",
            TestMethod::MannWhitney => "mann_whitney",
        }
    }

    /// Whether the test pairs `a[i]` with `b[i]` (same seed).
    pub fn is_paired(self) -> bool {
        match self {
            TestMethod::PairedT => true,
            TestMethod::Welch | TestMethod::MannWhitney => false,
        }
    }
}

/// How an interval was computed; every summary line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// `mean(d) ± t(n - 1) · sd(d) / sqrt(n)` over the paired differences d;
    /// scipy `ttest_rel(a, b).confidence_interval()`.
    PairedT,
    /// `mean(a) - mean(b) ± t(ν) · sqrt(s_a²/n_a + s_b²/n_b)`, ν the
    /// Welch–Satterthwaite degrees of freedom; scipy
    /// `ttest_ind(a, b, equal_var=False).confidence_interval()`.
    WelchSatterthwaite,
    /// Order statistics of the pairwise differences at the exact critical
    /// value of U.
    HodgesLehmannExact,
    /// Order statistics of the pairwise differences at the normal
    /// approximation's critical value of U (tie- and continuity-corrected).
    HodgesLehmannNormal,
}

impl IntervalMethod {
    /// Words for a summary line, e.g. `paired t interval`.
    pub fn label(self) -> &'static str {
        match self {
            IntervalMethod::PairedT => "paired t interval",
            IntervalMethod::WelchSatterthwaite => "Welch–Satterthwaite interval",
            IntervalMethod::HodgesLehmannExact => "Hodges–Lehmann exact interval",
            IntervalMethod::HodgesLehmannNormal => "Hodges–Lehmann normal-approximation interval",
        }
    }

    /// What the estimate and the interval are about, for differences `a - b`.
    pub fn estimand(self) -> &'static str {
        match self {
            IntervalMethod::PairedT => "mean of the paired differences a - b",
            IntervalMethod::WelchSatterthwaite => "difference of means a - b",
            IntervalMethod::HodgesLehmannExact | IntervalMethod::HodgesLehmannNormal => {
                "Hodges–Lehmann shift of a over b (median of the pairwise differences)"
            }
        }
    }

    /// Whether the estimate is the difference of means (`mean_diff`).
    pub fn estimates_mean_difference(self) -> bool {
        matches!(
            self,
            IntervalMethod::PairedT | IntervalMethod::WelchSatterthwaite
        )
    }
}

/// A two-sided interval for the difference a comparison's test is about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub method: IntervalMethod,
    pub confidence: f64,
    /// The point estimate: the mean difference (t tests) or the
    /// Hodges–Lehmann shift (median of the pairwise differences).
    pub estimate: f64,
    /// `-inf` / `+inf` (JSON `null`) when the samples are too small for the
    /// test to reject anything at this level.
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether `value` lies outside the closed interval.
    pub fn excludes(&self, value: f64) -> bool {
        self.low > value || self.high < value
    }
}
