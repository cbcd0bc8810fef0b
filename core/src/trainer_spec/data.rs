//! Where a trainer job's data come from: files (npz, npy, CSV, IDX, digits) or the
//! built-in synthetic generators, and the bounds each accepts.

use serde::{Deserialize, Serialize};

use super::validate::{at_least, check, fraction, non_negative};

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
    #[serde(default = "super::one")]
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

pub(super) fn validate(dataset: &DatasetSpec) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn dataset_bounds_are_checked() {
        assert_rejected(vec![
            (
                json!({"dataset": {"kind": "npz", "path": "d.npz", "val_fraction": 1.0}}),
                "val_fraction",
            ),
            (
                json!({"dataset": {"kind": "moons", "n_classes": 3}}),
                "moons",
            ),
        ]);
    }
}
