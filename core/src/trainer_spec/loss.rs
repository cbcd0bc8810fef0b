//! The loss, and the task (classification or regression) that the loss, the dataset
//! or an explicit `task` imply; they must agree.

use serde::{Deserialize, Serialize};

use super::validate::{check, fraction};
use super::{DatasetSpec, TrainerSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSpec {
    CrossEntropy {
        #[serde(default)]
        label_smoothing: f64,
    },
    Mse {},
}

impl TrainerSpec {
    /// The task if the spec alone decides it (explicit `task`, the loss, or a
    /// synthetic dataset); `None` for files, where the labels' dtype decides.
    pub fn declared_task(&self) -> Option<Task> {
        if let Some(task) = self.task {
            return Some(task);
        }
        match &self.loss {
            Some(LossSpec::CrossEntropy { .. }) => return Some(Task::Classification),
            Some(LossSpec::Mse {}) => return Some(Task::Regression),
            None => {}
        }
        self.dataset.implied_task()
    }
}

impl DatasetSpec {
    /// The task a built-in dataset implies; `None` for files, where the labels'
    /// dtype decides.
    fn implied_task(&self) -> Option<Task> {
        match self {
            DatasetSpec::Teacher(_) => Some(Task::Regression),
            DatasetSpec::Blobs(_)
            | DatasetSpec::Moons(_)
            | DatasetSpec::Spirals(_)
            | DatasetSpec::Images(_)
            | DatasetSpec::Sequences(_)
            | DatasetSpec::Digits { .. } => Some(Task::Classification),
            DatasetSpec::Npz { .. }
            | DatasetSpec::Npy { .. }
            | DatasetSpec::Csv { .. }
            | DatasetSpec::Idx { .. } => None,
        }
    }
}

pub(super) fn task_consistency(spec: &TrainerSpec) -> Result<(), String> {
    let data_task = spec.dataset.implied_task();
    let loss_task = match &spec.loss {
        Some(LossSpec::CrossEntropy { label_smoothing }) => {
            fraction("loss.label_smoothing", *label_smoothing)?;
            Some(Task::Classification)
        }
        Some(LossSpec::Mse {}) => Some(Task::Regression),
        None => None,
    };
    let sources = [
        ("task", spec.task),
        ("loss", loss_task),
        ("dataset", data_task),
    ];
    for (i, (first, a)) in sources.iter().enumerate() {
        for (second, b) in &sources[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                check(a == b, || {
                    format!("`{first}` implies {a:?} but `{second}` implies {b:?}")
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn loss_bounds_and_task_agreement_are_checked() {
        assert_rejected(vec![
            (
                json!({"loss": {"kind": "cross_entropy", "label_smoothing": 1.5}}),
                "label_smoothing",
            ),
            (
                json!({"dataset": {"kind": "teacher"}, "loss": {"kind": "cross_entropy"}}),
                "implies",
            ),
            (
                json!({"task": "regression", "loss": {"kind": "cross_entropy"}}),
                "implies",
            ),
        ]);
    }
}
