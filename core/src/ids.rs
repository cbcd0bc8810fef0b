//! Typed identifiers. A bare `String` never stands for a job, a worker or a stage.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's stable id: derived from (stage, variant, sweep point, seed), so submitting
/// a stage again names the same jobs. Safe as a file name by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Wraps an id received from outside; rejects anything that is not a safe name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if is_safe_name(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("invalid job id {raw:?}"))
        }
    }

    pub(crate) fn from_parts(parts: &[&str]) -> Self {
        Self(parts.join("."))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's id, given by the coordinator at registration (one per incarnation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attempt numbers start at 1; a requeue or retry makes a new attempt.
pub type AttemptNumber = u32;

/// The four research stages of the protocol, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Implementation,
    Baselines,
    Full,
    Ablations,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Implementation,
        Stage::Baselines,
        Stage::Full,
        Stage::Ablations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Implementation => "implementation",
            Stage::Baselines => "baselines",
            Stage::Full => "full",
            Stage::Ablations => "ablations",
        }
    }

    /// The prefix of the stage's result arrays in `experiment_results/` (seed protocol).
    pub fn results_prefix(self) -> &'static str {
        match self {
            Stage::Implementation => "implementation",
            Stage::Baselines => "baseline",
            Stage::Full => "full",
            Stage::Ablations => "ablation",
        }
    }

    /// The stage's summary file, when the protocol defines one.
    pub fn summary_file(self) -> Option<&'static str> {
        match self {
            Stage::Implementation => None,
            Stage::Baselines => Some("baseline_summary.json"),
            Stage::Full => Some("research_summary.json"),
            Stage::Ablations => Some("ablation_summary.json"),
        }
    }

    /// Parses a stage name; `all` is handled by callers that accept it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == raw)
            .ok_or_else(|| {
                format!(
                    "unknown stage {raw:?}: expected implementation, baselines, full, ablations or all"
                )
            })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names that become parts of file names and ids: letters, digits, `_` and `-`,
/// 1..=64 characters, not starting with `-`. Rules out traversal by construction.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_reject_traversal_and_separators() {
        for bad in [
            "", "..", "../x", "a/b", "-x", ".hidden", "a..b", "x\0y", "a b",
        ] {
            assert!(!is_safe_name(bad), "{bad:?} should be rejected");
        }
        for good in [
            "proposed",
            "baseline_linear",
            "full.proposed.s3",
            "no-dropout",
        ] {
            assert!(is_safe_name(good), "{good:?} should be accepted");
        }
    }

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Ok(stage));
        }
        assert!(Stage::parse("bogus").is_err());
    }
}
