//! Early stopping: which per-epoch metric to watch, in which direction, how patiently.

use serde::{Deserialize, Serialize};

use super::loss::Task;
use super::validate::{at_least, check, non_negative};
use super::{DatasetSpec, TrainerSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    #[serde(default = "default_stop_metric")]
    pub metric: String,
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// `None`: `min` for losses and errors, `max` otherwise.
    #[serde(default)]
    pub mode: Option<StopMode>,
    #[serde(default)]
    pub min_delta: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    Min,
    Max,
}

impl EarlyStoppingSpec {
    pub fn resolved_mode(&self) -> StopMode {
        self.mode.unwrap_or_else(|| {
            let minimised = ["loss", "mse", "mae"];
            if minimised.iter().any(|word| self.metric.contains(word)) {
                StopMode::Min
            } else {
                StopMode::Max
            }
        })
    }
}

fn default_stop_metric() -> String {
    "val_loss".to_owned()
}
fn default_patience() -> usize {
    5
}

pub(super) fn validate(spec: &TrainerSpec, stop: &EarlyStoppingSpec) -> Result<(), String> {
    at_least("patience", stop.patience, 1)?;
    non_negative("min_delta", stop.min_delta)?;
    // An npz may carry its own x_val, only known when read: allow val_* there.
    let maybe_val = spec.has_validation() || matches!(spec.dataset, DatasetSpec::Npz { .. });
    let tasks = match spec.declared_task() {
        Some(task) => vec![task],
        None => vec![Task::Classification, Task::Regression],
    };
    let known: Vec<&str> = tasks
        .into_iter()
        .flat_map(|task| TrainerSpec::epoch_metric_names(task, maybe_val))
        .filter(|name| *name != "samples_per_sec")
        .collect();
    check(known.contains(&stop.metric.as_str()), || {
        let hint = if stop.metric.starts_with("val_") && !maybe_val {
            " (set `dataset.val_fraction` > 0 for a validation split)"
        } else {
            ""
        };
        format!(
            "`metric: {}` is not produced per epoch{hint}; known: {}",
            stop.metric,
            known.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn early_stopping_metric_must_be_produced() {
        assert_rejected(vec![(
            json!({"early_stopping": {"metric": "test_r2"}, "task": "classification"}),
            "test_r2",
        )]);
    }
}
