//! The names of the metrics a spec makes the trainer emit, known before it runs.

use super::loss::Task;
use super::{DatasetSpec, TrainerSpec};

impl TrainerSpec {
    /// Whether a validation split is certainly present (a file's own `x_val` is only
    /// known when the data are read, so an npz with `x_val` may add `val_loss`).
    pub fn has_validation(&self) -> bool {
        let (fraction, explicit) = match &self.dataset {
            DatasetSpec::Npz { val_fraction, .. }
            | DatasetSpec::Digits { val_fraction, .. }
            | DatasetSpec::Idx { val_fraction, .. } => (*val_fraction, false),
            DatasetSpec::Npy {
                val_fraction,
                x_val,
                ..
            } => (*val_fraction, x_val.is_some()),
            DatasetSpec::Csv {
                val_fraction, val, ..
            } => (*val_fraction, val.is_some()),
            DatasetSpec::Blobs(s)
            | DatasetSpec::Moons(s)
            | DatasetSpec::Spirals(s)
            | DatasetSpec::Teacher(s) => (s.val_fraction, false),
            DatasetSpec::Images(s) => (s.val_fraction, false),
            DatasetSpec::Sequences(s) => (s.val_fraction, false),
        };
        explicit || fraction > 0.0
    }

    /// Metrics with one value per epoch, for a known task.
    pub fn epoch_metric_names(task: Task, validation: bool) -> Vec<&'static str> {
        let mut names = vec!["train_loss"];
        if validation {
            names.push("val_loss");
            if task == Task::Classification {
                names.push("val_accuracy");
            }
        }
        names.push("test_loss");
        match task {
            Task::Classification => names.extend(["test_accuracy", "test_f1"]),
            Task::Regression => names.extend(["test_mse", "test_mae", "test_r2"]),
        }
        names.push("samples_per_sec");
        names
    }

    /// Every metric name the trainer may emit for this spec. When the task is decided
    /// by the data (files without `task` or `loss`), both tasks' names are listed.
    pub fn metric_names(&self) -> Vec<String> {
        let tasks = match self.declared_task() {
            Some(task) => vec![task],
            None => vec![Task::Classification, Task::Regression],
        };
        let mut names: Vec<String> = Vec::new();
        for task in tasks {
            for name in Self::epoch_metric_names(task, self.has_validation()) {
                if !names.iter().any(|known| known == name) {
                    names.push(name.to_owned());
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::minimal;
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_names_follow_the_task() {
        let mut value = minimal();
        value["dataset"] = json!({"kind": "teacher", "val_fraction": 0.2});
        let spec = TrainerSpec::from_json(&value).expect("valid");
        assert_eq!(
            spec.metric_names(),
            [
                "train_loss",
                "val_loss",
                "test_loss",
                "test_mse",
                "test_mae",
                "test_r2",
                "samples_per_sec"
            ]
        );
        // Files without a declared task may be either: both sets are listed.
        let spec = TrainerSpec::from_json(&minimal()).expect("valid");
        let names = spec.metric_names();
        assert!(
            names.contains(&"test_accuracy".to_owned()) && names.contains(&"test_r2".to_owned())
        );
        assert!(!names.contains(&"val_loss".to_owned()));
    }
}
