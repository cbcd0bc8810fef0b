//! The schema of the `job.trainer` section: what the built-in tch trainer runs.
//!
//! Pure data and validation, no libtorch: the coordinator checks configs with it and
//! the trainer crate consumes it. Every struct rejects unknown keys and every choice is
//! an enum tagged by `kind`, so a typo is an error naming the key, never a silent
//! default. [`TrainerSpec::from_json`] is the one entry point that also checks bounds;
//! a spec it returns is valid, and the trainer relies on that.
//!
//! One file per concept: `data`, `model`, `optimizer`, `schedule`, `loss` (and the
//! task it implies), `stopping`; `metrics` names what a spec emits; `validate` runs
//! every concept's checks. Everything public is re-exported here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod data;
mod loss;
mod metrics;
mod model;
mod optimizer;
mod schedule;
mod stopping;
mod validate;

pub use data::{DatasetSpec, ImagesSpec, SequencesSpec, SyntheticSpec};
pub use loss::{LossSpec, Task};
pub use model::{Activation, ModelSpec, Norm, Pool};
pub use optimizer::OptimizerSpec;
pub use schedule::ScheduleSpec;
pub use stopping::{EarlyStoppingSpec, StopMode};

/// The whole `trainer:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerSpec {
    pub dataset: DatasetSpec,
    /// `None`: inferred from the loss, the dataset kind, or the labels' dtype.
    #[serde(default)]
    pub task: Option<Task>,
    pub model: ModelSpec,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// `None`: cross-entropy for classification, mean squared error for regression.
    #[serde(default)]
    pub loss: Option<LossSpec>,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Largest global L2 norm of the gradients; larger ones are scaled down.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Also emit `train_loss` (running mean) and evaluation metrics every N steps; 0: off.
    #[serde(default)]
    pub eval_every_steps: usize,
    /// Write a checkpoint every N epochs (and always on cancellation and at the end).
    #[serde(default = "one")]
    pub checkpoint_every: usize,
    #[serde(default)]
    pub precision: Precision,
    /// Intra-op threads libtorch uses on CPU.
    #[serde(default = "one")]
    pub threads: usize,
}

/// How the trainer computes (docs/config.md has the accuracy trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    /// AMP-style mixed precision: parameters, gradients, optimizer state and the loss
    /// stay fp32; matmuls and convolutions run on bf16 casts of weights and
    /// activations inside the forward (PyTorch's autocast does the same).
    Bf16,
    /// Pure bf16: parameters, gradients and optimizer state are stored in bf16 too
    /// (half the memory and traffic); only the loss (and normalisation's statistics
    /// inside libtorch's kernels) are computed in fp32. Updates smaller than half a
    /// bf16 ulp of a weight (about 0.2% of it) are lost.
    Bf16Pure,
}

impl TrainerSpec {
    /// Parses and validates a `trainer:` section; the error names the offending key.
    pub fn from_json(value: &Value) -> Result<TrainerSpec, String> {
        let spec: TrainerSpec = serde_json::from_value(value.clone())
            .map_err(|err| validate::locate_parse_error(value, err))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks bounds and cross-field consistency.
    pub fn validate(&self) -> Result<(), String> {
        validate::validate(self)
    }
}

fn one() -> usize {
    1
}
fn default_epochs() -> usize {
    10
}
fn default_batch_size() -> usize {
    128
}

/// What the concept files' tests share.
#[cfg(test)]
mod test_support {
    use super::TrainerSpec;
    use serde_json::{json, Value};

    pub(super) fn minimal() -> Value {
        json!({
            "dataset": {"kind": "npz", "path": "data/digits.npz"},
            "model": {"kind": "mlp", "hidden": [64]},
        })
    }

    /// Each case replaces top-level sections of `minimal()`; the result must be
    /// rejected with a message containing the needle.
    pub(super) fn assert_rejected(cases: Vec<(Value, &str)>) {
        for (patch, needle) in cases {
            let mut value = minimal();
            for (key, section) in patch.as_object().expect("object") {
                value[key] = section.clone();
            }
            let err = TrainerSpec::from_json(&value).expect_err(needle);
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_rejected, minimal};
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec = TrainerSpec::from_json(&minimal()).expect("valid");
        assert_eq!(spec.epochs, 10);
        assert_eq!(spec.batch_size, 128);
        assert_eq!(spec.optimizer, OptimizerSpec::default());
        assert_eq!(spec.precision, Precision::Fp32);
        assert_eq!(spec.declared_task(), None);
    }

    #[test]
    fn the_design_example_parses() {
        let value = json!({
            "dataset": {"kind": "npz", "path": "data/digits.npz", "normalize": true, "val_fraction": 0.1},
            "task": "classification",
            "model": {"kind": "mlp", "hidden": [256, 256], "activation": "relu", "dropout": 0.1, "norm": "layer"},
            "optimizer": {"kind": "sgd", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9, "nesterov": true},
            "schedule": {"kind": "step", "warmup_epochs": 1, "step_size": 10, "gamma": 0.1},
            "loss": {"kind": "cross_entropy", "label_smoothing": 0.1},
            "epochs": 20, "batch_size": 128, "grad_clip": 1.0,
            "early_stopping": {"metric": "val_loss", "patience": 5, "mode": "min"},
            "eval_every_steps": 0, "checkpoint_every": 1, "precision": "bf16", "threads": 1,
        });
        let spec = TrainerSpec::from_json(&value).expect("valid");
        assert_eq!(
            spec.metric_names(),
            [
                "train_loss",
                "val_loss",
                "val_accuracy",
                "test_loss",
                "test_accuracy",
                "test_f1",
                "samples_per_sec"
            ]
        );
    }

    #[test]
    fn top_level_bounds_are_checked() {
        assert_rejected(vec![
            (json!({"epochs": 0}), "epochs"),
            (json!({"batch_size": 0}), "batch_size"),
            (json!({"grad_clip": 0.0}), "grad_clip"),
        ]);
    }

    #[test]
    fn round_trips_through_json() {
        let mut value = minimal();
        value["dataset"] = json!({"kind": "sequences", "seq_len": 12});
        value["model"] = json!({"kind": "transformer", "d_model": 32, "heads": 2});
        let spec = TrainerSpec::from_json(&value).expect("valid");
        let again = TrainerSpec::from_json(&serde_json::to_value(&spec).expect("serialize"))
            .expect("valid");
        assert_eq!(spec, again);
    }
}
