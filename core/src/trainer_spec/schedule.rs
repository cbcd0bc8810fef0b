//! The learning-rate schedule: warm-up, then constant, step or cosine.

use serde::{Deserialize, Serialize};

use super::validate::{at_least, check, positive};

/// The learning rate per epoch, after a linear warm-up (per step) over `warmup_epochs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    Constant {
        #[serde(default)]
        warmup_epochs: usize,
    },
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default = "default_step_size")]
        step_size: usize,
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Cosine decay (per step) from lr to `lr * min_factor` at the last epoch.
    Cosine {
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default)]
        min_factor: f64,
    },
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec::Constant { warmup_epochs: 0 }
    }
}

impl ScheduleSpec {
    pub fn warmup_epochs(&self) -> usize {
        match self {
            ScheduleSpec::Constant { warmup_epochs }
            | ScheduleSpec::Step { warmup_epochs, .. }
            | ScheduleSpec::Cosine { warmup_epochs, .. } => *warmup_epochs,
        }
    }
}

fn default_step_size() -> usize {
    10
}
fn default_gamma() -> f64 {
    0.1
}

pub(super) fn validate(schedule: &ScheduleSpec, epochs: usize) -> Result<(), String> {
    check(schedule.warmup_epochs() <= epochs, || {
        format!(
            "`warmup_epochs` ({}) exceeds `epochs` ({epochs})",
            schedule.warmup_epochs()
        )
    })?;
    match schedule {
        ScheduleSpec::Constant { .. } => Ok(()),
        ScheduleSpec::Step {
            step_size, gamma, ..
        } => {
            at_least("step_size", *step_size, 1)?;
            positive("gamma", *gamma)
        }
        ScheduleSpec::Cosine { min_factor, .. } => check((0.0..=1.0).contains(min_factor), || {
            format!("`min_factor` must be in [0, 1], got {min_factor}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn warmup_cannot_exceed_epochs() {
        assert_rejected(vec![(
            json!({"schedule": {"kind": "constant", "warmup_epochs": 50}}),
            "warmup_epochs",
        )]);
    }
}
