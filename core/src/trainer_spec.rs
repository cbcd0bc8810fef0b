//! The schema of the `job.trainer` section: what the built-in tch trainer runs.
//!
//! Pure data and validation, no libtorch: the coordinator checks configs with it and
//! the trainer crate consumes it. Every struct rejects unknown keys and every choice is
//! an enum tagged by `kind`, so a typo is an error naming the key, never a silent
//! default. [`TrainerSpec::from_json`] is the one entry point that also checks bounds;
//! a spec it returns is valid, and the trainer relies on that.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

/// Where the data comes from. Relative paths resolve against the job's data root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// One `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (optionally `x_val`, `y_val`).
    Npz {
        path: String,
        #[serde(default)]
        normalize: bool,
        #[serde(default)]
        val_fraction: f64,
    },
    /// scikit-learn digits, as the `.npz` that `scripts/setup.sh` prepares.
    Digits {
        #[serde(default = "default_digits_path")]
        path: String,
        #[serde(default)]
        normalize: bool,
        #[serde(default)]
        val_fraction: f64,
    },
    Npy {
        x_train: String,
        y_train: String,
        x_test: String,
        y_test: String,
        #[serde(default)]
        x_val: Option<String>,
        #[serde(default)]
        y_val: Option<String>,
        #[serde(default)]
        normalize: bool,
        #[serde(default)]
        val_fraction: f64,
    },
    /// Numeric CSV files with a header row; one column is the target.
    Csv {
        train: String,
        test: String,
        #[serde(default)]
        val: Option<String>,
        #[serde(default = "default_target_column")]
        target_column: String,
        #[serde(default)]
        normalize: bool,
        #[serde(default)]
        val_fraction: f64,
    },
    /// MNIST-style IDX files (uncompressed); images are scaled to [0, 1].
    Idx {
        train_images: String,
        train_labels: String,
        test_images: String,
        test_labels: String,
        #[serde(default)]
        normalize: bool,
        #[serde(default)]
        val_fraction: f64,
    },
    /// Gaussian clusters, one per class.
    Blobs(SyntheticSpec),
    /// Two interleaved half circles (2 classes), padded with noise features.
    Moons(SyntheticSpec),
    /// Interleaved spiral arms, one per class, padded with noise features.
    Spirals(SyntheticSpec),
    /// Regression: targets from a random two-layer teacher network, plus noise.
    Teacher(SyntheticSpec),
    /// Small images: each class is a fixed random template, shifted and noised.
    Images(ImagesSpec),
    /// Token sequences; the class is the token planted most often.
    Sequences(SequencesSpec),
}

/// The vector-valued synthetic generators. The data depend only on `data_seed`, so
/// every training seed sees the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    #[serde(default = "default_n_train")]
    pub n_train: usize,
    #[serde(default = "default_n_test")]
    pub n_test: usize,
    #[serde(default = "default_n_features")]
    pub n_features: usize,
    /// Blobs 4, spirals 3, moons exactly 2; not allowed for teacher.
    #[serde(default)]
    pub n_classes: Option<usize>,
    /// Teacher only: regression outputs (default 1).
    #[serde(default)]
    pub n_outputs: Option<usize>,
    #[serde(default = "default_noise")]
    pub noise: f64,
    #[serde(default)]
    pub val_fraction: f64,
    #[serde(default)]
    pub data_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSpec {
    #[serde(default = "default_n_train")]
    pub n_train: usize,
    #[serde(default = "default_n_test")]
    pub n_test: usize,
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    #[serde(default = "one")]
    pub channels: usize,
    #[serde(default = "default_n_classes")]
    pub n_classes: usize,
    #[serde(default = "default_image_noise")]
    pub noise: f64,
    #[serde(default)]
    pub val_fraction: f64,
    #[serde(default)]
    pub data_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencesSpec {
    #[serde(default = "default_n_train")]
    pub n_train: usize,
    #[serde(default = "default_n_test")]
    pub n_test: usize,
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_n_classes")]
    pub n_classes: usize,
    #[serde(default)]
    pub val_fraction: f64,
    #[serde(default)]
    pub data_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    Linear {},
    Mlp {
        #[serde(default = "default_hidden")]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
        #[serde(default)]
        dropout: f64,
        #[serde(default)]
        norm: Norm,
    },
    /// Same-padded convolutions, each followed by optional batch norm, the activation
    /// and a 2×2 pool; then an MLP head. Flat inputs with a square length are reshaped
    /// to one-channel square images (digits: 64 → 8×8).
    Cnn {
        #[serde(default = "default_channels")]
        channels: Vec<usize>,
        #[serde(default = "default_kernel_size")]
        kernel_size: usize,
        #[serde(default)]
        pool: Pool,
        #[serde(default = "default_cnn_hidden")]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
        #[serde(default)]
        dropout: f64,
        #[serde(default)]
        norm: Norm,
    },
    /// Pre-norm Transformer encoder, learned positions, mean pooling. Integer inputs
    /// are tokens; float inputs `[n, len]` or `[n, len, f]` are linearly embedded.
    Transformer {
        #[serde(default = "default_d_model")]
        d_model: usize,
        #[serde(default = "default_heads")]
        heads: usize,
        #[serde(default = "default_layers")]
        layers: usize,
        #[serde(default = "default_ff")]
        ff: usize,
        #[serde(default = "default_max_len")]
        max_len: usize,
        #[serde(default)]
        dropout: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Tanh,
    Silu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    None,
    Batch,
    Layer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    #[default]
    Max,
    Avg,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    Adam {
        #[serde(default = "default_lr")]
        lr: f64,
        /// L2 penalty added to the gradient (PyTorch `Adam`).
        #[serde(default)]
        weight_decay: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
    },
    Adamw {
        #[serde(default = "default_lr")]
        lr: f64,
        /// Decoupled weight decay (PyTorch `AdamW`, default 0.01).
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
    },
    Sgd {
        #[serde(default = "default_sgd_lr")]
        lr: f64,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
    },
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam {
            lr: default_lr(),
            weight_decay: 0.0,
            betas: default_betas(),
            eps: default_eps(),
        }
    }
}

impl OptimizerSpec {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. }
            | OptimizerSpec::Sgd { lr, .. } => *lr,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSpec {
    CrossEntropy {
        #[serde(default)]
        label_smoothing: f64,
    },
    Mse {},
}

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

/// `bf16` is AMP-style mixed precision: parameters, optimizer state and the loss stay
/// fp32; matmuls and convolutions run on bf16 casts of weights and activations inside
/// the forward. CUDA only: on CPU the trainer warns and runs fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
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
        match &self.dataset {
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

fn one() -> usize {
    1
}
fn default_epochs() -> usize {
    10
}
fn default_batch_size() -> usize {
    128
}
fn default_digits_path() -> String {
    "data/digits.npz".to_owned()
}
fn default_target_column() -> String {
    "label".to_owned()
}
fn default_n_train() -> usize {
    2000
}
fn default_n_test() -> usize {
    500
}
fn default_n_features() -> usize {
    16
}
fn default_n_classes() -> usize {
    4
}
fn default_noise() -> f64 {
    0.1
}
fn default_image_size() -> usize {
    16
}
fn default_image_noise() -> f64 {
    0.3
}
fn default_seq_len() -> usize {
    16
}
fn default_vocab_size() -> usize {
    16
}
fn default_hidden() -> Vec<usize> {
    vec![256, 256]
}
fn default_channels() -> Vec<usize> {
    vec![16, 32]
}
fn default_kernel_size() -> usize {
    3
}
fn default_cnn_hidden() -> Vec<usize> {
    vec![64]
}
fn default_d_model() -> usize {
    64
}
fn default_heads() -> usize {
    4
}
fn default_layers() -> usize {
    2
}
fn default_ff() -> usize {
    128
}
fn default_max_len() -> usize {
    64
}
fn default_lr() -> f64 {
    1.0e-3
}
fn default_sgd_lr() -> f64 {
    1.0e-2
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1.0e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}
fn default_step_size() -> usize {
    10
}
fn default_gamma() -> f64 {
    0.1
}
fn default_stop_metric() -> String {
    "val_loss".to_owned()
}
fn default_patience() -> usize {
    5
}

/// Bounds and cross-field checks, and error messages that say where the problem is.
mod validate {
    use super::*;

    /// Re-parses section by section so the message names the section as well as the key.
    pub(super) fn locate_parse_error(value: &Value, err: serde_json::Error) -> String {
        let Some(map) = value.as_object() else {
            return "the trainer section must be a mapping".to_owned();
        };
        let section_error = |key: &str, section: &Value| -> Option<String> {
            let result = match key {
                "dataset" => serde_json::from_value::<DatasetSpec>(section.clone()).err(),
                "model" => serde_json::from_value::<ModelSpec>(section.clone()).err(),
                "optimizer" => serde_json::from_value::<OptimizerSpec>(section.clone()).err(),
                "schedule" => serde_json::from_value::<ScheduleSpec>(section.clone()).err(),
                "loss" => serde_json::from_value::<LossSpec>(section.clone()).err(),
                "early_stopping" => {
                    serde_json::from_value::<EarlyStoppingSpec>(section.clone()).err()
                }
                _ => None,
            };
            result.map(|err| format!("`{key}`: {err}"))
        };
        for (key, section) in map {
            if let Some(message) = section_error(key, section) {
                return message;
            }
        }
        err.to_string()
    }

    fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(message())
        }
    }

    fn fraction(name: &str, value: f64) -> Result<(), String> {
        check((0.0..1.0).contains(&value), || {
            format!("`{name}` must be in [0, 1), got {value}")
        })
    }

    fn positive(name: &str, value: f64) -> Result<(), String> {
        check(value.is_finite() && value > 0.0, || {
            format!("`{name}` must be a positive number, got {value}")
        })
    }

    fn non_negative(name: &str, value: f64) -> Result<(), String> {
        check(value.is_finite() && value >= 0.0, || {
            format!("`{name}` must be ≥ 0, got {value}")
        })
    }

    fn at_least(name: &str, value: usize, min: usize) -> Result<(), String> {
        check(value >= min, || {
            format!("`{name}` must be ≥ {min}, got {value}")
        })
    }

    pub(super) fn validate(spec: &TrainerSpec) -> Result<(), String> {
        at_least("epochs", spec.epochs, 1)?;
        at_least("batch_size", spec.batch_size, 1)?;
        at_least("checkpoint_every", spec.checkpoint_every, 1)?;
        at_least("threads", spec.threads, 1)?;
        if let Some(clip) = spec.grad_clip {
            positive("grad_clip", clip)?;
        }
        dataset(&spec.dataset).map_err(|err| format!("dataset: {err}"))?;
        model(&spec.model, &spec.dataset).map_err(|err| format!("model: {err}"))?;
        optimizer(&spec.optimizer).map_err(|err| format!("optimizer: {err}"))?;
        schedule(&spec.schedule, spec.epochs).map_err(|err| format!("schedule: {err}"))?;
        task_consistency(spec)?;
        if let Some(stop) = &spec.early_stopping {
            early_stopping(spec, stop).map_err(|err| format!("early_stopping: {err}"))?;
        }
        Ok(())
    }

    fn dataset(dataset: &DatasetSpec) -> Result<(), String> {
        let paths: Vec<(&str, &String)> = match dataset {
            DatasetSpec::Npz { path, .. } | DatasetSpec::Digits { path, .. } => {
                vec![("path", path)]
            }
            DatasetSpec::Npy {
                x_train,
                y_train,
                x_test,
                y_test,
                x_val,
                y_val,
                ..
            } => {
                check(x_val.is_some() == y_val.is_some(), || {
                    "give both `x_val` and `y_val`, or neither".to_owned()
                })?;
                let mut paths = vec![
                    ("x_train", x_train),
                    ("y_train", y_train),
                    ("x_test", x_test),
                    ("y_test", y_test),
                ];
                paths.extend(x_val.iter().map(|p| ("x_val", p)));
                paths.extend(y_val.iter().map(|p| ("y_val", p)));
                paths
            }
            DatasetSpec::Csv {
                train,
                test,
                val,
                target_column,
                ..
            } => {
                check(!target_column.trim().is_empty(), || {
                    "`target_column` is empty".to_owned()
                })?;
                let mut paths = vec![("train", train), ("test", test)];
                paths.extend(val.iter().map(|p| ("val", p)));
                paths
            }
            DatasetSpec::Idx {
                train_images,
                train_labels,
                test_images,
                test_labels,
                ..
            } => vec![
                ("train_images", train_images),
                ("train_labels", train_labels),
                ("test_images", test_images),
                ("test_labels", test_labels),
            ],
            DatasetSpec::Blobs(s) => return synthetic(s, "blobs"),
            DatasetSpec::Moons(s) => return synthetic(s, "moons"),
            DatasetSpec::Spirals(s) => return synthetic(s, "spirals"),
            DatasetSpec::Teacher(s) => return synthetic(s, "teacher"),
            DatasetSpec::Images(s) => {
                sizes(s.n_train, s.n_test, s.val_fraction)?;
                at_least("image_size", s.image_size, 4)?;
                at_least("channels", s.channels, 1)?;
                at_least("n_classes", s.n_classes, 2)?;
                return non_negative("noise", s.noise);
            }
            DatasetSpec::Sequences(s) => {
                sizes(s.n_train, s.n_test, s.val_fraction)?;
                at_least("seq_len", s.seq_len, 4)?;
                at_least("n_classes", s.n_classes, 2)?;
                return check(s.vocab_size > s.n_classes, || {
                    format!(
                        "`vocab_size` ({}) must exceed `n_classes` ({}): the class tokens \
                         need filler tokens around them",
                        s.vocab_size, s.n_classes
                    )
                });
            }
        };
        for (name, path) in paths {
            check(!path.trim().is_empty(), || format!("`{name}` is empty"))?;
        }
        let val_fraction = match dataset {
            DatasetSpec::Npz { val_fraction, .. }
            | DatasetSpec::Digits { val_fraction, .. }
            | DatasetSpec::Npy { val_fraction, .. }
            | DatasetSpec::Csv { val_fraction, .. }
            | DatasetSpec::Idx { val_fraction, .. } => *val_fraction,
            _ => 0.0,
        };
        fraction("val_fraction", val_fraction)
    }

    fn sizes(n_train: usize, n_test: usize, val_fraction: f64) -> Result<(), String> {
        at_least("n_train", n_train, 2)?;
        at_least("n_test", n_test, 1)?;
        fraction("val_fraction", val_fraction)?;
        // The split keeps at least one training row (rounding is the trainer's).
        check(
            (n_train as f64 * val_fraction).round() < n_train as f64,
            || "`val_fraction` leaves no training rows".to_owned(),
        )
    }

    fn synthetic(s: &SyntheticSpec, kind: &str) -> Result<(), String> {
        sizes(s.n_train, s.n_test, s.val_fraction)?;
        non_negative("noise", s.noise)?;
        let min_features = if matches!(kind, "moons" | "spirals") {
            2
        } else {
            1
        };
        at_least("n_features", s.n_features, min_features)?;
        match (kind, s.n_classes, s.n_outputs) {
            ("teacher", Some(_), _) => {
                Err("`n_classes` does not apply to teacher (a regression); use `n_outputs`".into())
            }
            ("teacher", None, Some(outputs)) => at_least("n_outputs", outputs, 1),
            ("teacher", None, None) => Ok(()),
            (_, _, Some(_)) => Err(format!("`n_outputs` applies to teacher only, not {kind}")),
            ("moons", Some(classes), None) => check(classes == 2, || {
                format!("moons has exactly 2 classes, got `n_classes: {classes}`")
            }),
            (_, Some(classes), None) => at_least("n_classes", classes, 2),
            (_, None, None) => Ok(()),
        }
    }

    fn model(model: &ModelSpec, dataset: &DatasetSpec) -> Result<(), String> {
        let hidden_ok = |hidden: &[usize]| {
            check(hidden.iter().all(|&width| width >= 1), || {
                format!("`hidden` widths must be ≥ 1, got {hidden:?}")
            })
        };
        match model {
            ModelSpec::Linear {} => Ok(()),
            ModelSpec::Mlp {
                hidden, dropout, ..
            } => {
                hidden_ok(hidden)?;
                fraction("dropout", *dropout)
            }
            ModelSpec::Cnn {
                channels,
                kernel_size,
                hidden,
                dropout,
                norm,
                ..
            } => {
                check(!channels.is_empty(), || "`channels` is empty".to_owned())?;
                check(channels.iter().all(|&c| c >= 1), || {
                    format!("`channels` must be ≥ 1, got {channels:?}")
                })?;
                check(kernel_size % 2 == 1, || {
                    format!("`kernel_size` must be odd (same padding), got {kernel_size}")
                })?;
                check(*norm != Norm::Layer, || {
                    "`norm: layer` is not supported for cnn; use batch or none".to_owned()
                })?;
                hidden_ok(hidden)?;
                fraction("dropout", *dropout)
            }
            ModelSpec::Transformer {
                d_model,
                heads,
                layers,
                ff,
                max_len,
                dropout,
            } => {
                at_least("heads", *heads, 1)?;
                at_least("layers", *layers, 1)?;
                at_least("ff", *ff, 1)?;
                at_least("max_len", *max_len, 1)?;
                check(*d_model >= 1 && d_model % heads == 0, || {
                    format!(
                        "`d_model` ({d_model}) must be a positive multiple of `heads` ({heads})"
                    )
                })?;
                if let DatasetSpec::Sequences(s) = dataset {
                    check(s.seq_len <= *max_len, || {
                        format!(
                            "`max_len` ({max_len}) is shorter than the sequences ({})",
                            s.seq_len
                        )
                    })?;
                }
                fraction("dropout", *dropout)
            }
        }
    }

    fn optimizer(optimizer: &OptimizerSpec) -> Result<(), String> {
        match optimizer {
            OptimizerSpec::Adam {
                lr,
                weight_decay,
                betas,
                eps,
            }
            | OptimizerSpec::Adamw {
                lr,
                weight_decay,
                betas,
                eps,
            } => {
                positive("lr", *lr)?;
                non_negative("weight_decay", *weight_decay)?;
                fraction("betas[0]", betas[0])?;
                fraction("betas[1]", betas[1])?;
                positive("eps", *eps)
            }
            OptimizerSpec::Sgd {
                lr,
                weight_decay,
                momentum,
                nesterov,
            } => {
                positive("lr", *lr)?;
                non_negative("weight_decay", *weight_decay)?;
                fraction("momentum", *momentum)?;
                check(!*nesterov || *momentum > 0.0, || {
                    "`nesterov: true` needs `momentum` > 0".to_owned()
                })
            }
        }
    }

    fn schedule(schedule: &ScheduleSpec, epochs: usize) -> Result<(), String> {
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
            ScheduleSpec::Cosine { min_factor, .. } => {
                check((0.0..=1.0).contains(min_factor), || {
                    format!("`min_factor` must be in [0, 1], got {min_factor}")
                })
            }
        }
    }

    fn task_consistency(spec: &TrainerSpec) -> Result<(), String> {
        let data_task = match &spec.dataset {
            DatasetSpec::Teacher(_) => Some(Task::Regression),
            DatasetSpec::Blobs(_)
            | DatasetSpec::Moons(_)
            | DatasetSpec::Spirals(_)
            | DatasetSpec::Images(_)
            | DatasetSpec::Sequences(_)
            | DatasetSpec::Digits { .. } => Some(Task::Classification),
            _ => None,
        };
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

    fn early_stopping(spec: &TrainerSpec, stop: &EarlyStoppingSpec) -> Result<(), String> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "dataset": {"kind": "npz", "path": "data/digits.npz"},
            "model": {"kind": "mlp", "hidden": [64]},
        })
    }

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
    fn unknown_keys_are_named() {
        let mut value = minimal();
        value["model"]["hiden"] = json!([3]);
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("hiden") && err.contains("model"), "{err}");

        let mut value = minimal();
        value["epochz"] = json!(3);
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("epochz"), "{err}");

        let mut value = minimal();
        value["dataset"] = json!({"kind": "blobs", "n_sample": 10});
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("n_sample") && err.contains("dataset"), "{err}");

        let mut value = minimal();
        value["optimizer"] = json!({"kind": "adam", "momentum": 0.9});
        let err = TrainerSpec::from_json(&value).expect_err("momentum is sgd's");
        assert!(err.contains("momentum"), "{err}");

        let mut value = minimal();
        value["model"] = json!({"kind": "resnet"});
        let err = TrainerSpec::from_json(&value).expect_err("unknown kind");
        assert!(err.contains("resnet"), "{err}");
    }

    #[test]
    fn bounds_are_checked() {
        let cases = [
            (json!({"epochs": 0}), "epochs"),
            (json!({"batch_size": 0}), "batch_size"),
            (json!({"optimizer": {"kind": "adam", "lr": 0.0}}), "lr"),
            (json!({"optimizer": {"kind": "sgd", "lr": -1.0}}), "lr"),
            (
                json!({"optimizer": {"kind": "sgd", "nesterov": true}}),
                "nesterov",
            ),
            (json!({"model": {"kind": "mlp", "dropout": 1.0}}), "dropout"),
            (
                json!({"model": {"kind": "cnn", "kernel_size": 4}}),
                "kernel_size",
            ),
            (
                json!({"model": {"kind": "transformer", "d_model": 30, "heads": 4}}),
                "d_model",
            ),
            (json!({"grad_clip": 0.0}), "grad_clip"),
            (
                json!({"loss": {"kind": "cross_entropy", "label_smoothing": 1.5}}),
                "label_smoothing",
            ),
            (
                json!({"dataset": {"kind": "npz", "path": "d.npz", "val_fraction": 1.0}}),
                "val_fraction",
            ),
            (
                json!({"dataset": {"kind": "moons", "n_classes": 3}}),
                "moons",
            ),
            (
                json!({"dataset": {"kind": "teacher"}, "loss": {"kind": "cross_entropy"}}),
                "implies",
            ),
            (
                json!({"task": "regression", "loss": {"kind": "cross_entropy"}}),
                "implies",
            ),
            (
                json!({"early_stopping": {"metric": "test_r2"}, "task": "classification"}),
                "test_r2",
            ),
            (
                json!({"schedule": {"kind": "constant", "warmup_epochs": 50}}),
                "warmup_epochs",
            ),
        ];
        for (patch, needle) in cases {
            let mut value = minimal();
            for (key, section) in patch.as_object().expect("object") {
                value[key] = section.clone();
            }
            let err = TrainerSpec::from_json(&value).expect_err(needle);
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

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
