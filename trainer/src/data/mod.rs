//! Datasets: reading files or generating synthetic data, then one normalisation path
//! for all of them (dtype, task, validation split, feature standardisation).
//!
//! Invariant of a [`Dataset`]: every split has the same per-row shape; `x` is Float,
//! or Int64 token ids when the model embeds tokens; `y` is Int64 class ids `[n]` for
//! classification and Float `[n, outputs]` for regression.

mod files;
mod synthetic;

use std::path::Path;

use expcluster_core::trainer_spec::{DatasetSpec, ModelSpec, Task, TrainerSpec};
use tch::{Device, Kind, Tensor};

use crate::rng::{derive, purpose, Rng};
use crate::TrainError;

/// One split: inputs and targets with the same number of rows.
#[derive(Debug)]
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
}

impl Split {
    pub fn rows(&self) -> usize {
        self.x.size()[0] as usize
    }

    fn to_device(&self, device: Device) -> Split {
        Split {
            x: self.x.to_device(device),
            y: self.y.to_device(device),
        }
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub train: Split,
    pub val: Option<Split>,
    pub test: Split,
    pub task: Task,
    /// Classes, or regression outputs.
    pub outputs: usize,
    /// `Some(vocabulary size)` when `x` holds token ids.
    pub vocab: Option<usize>,
}

impl Dataset {
    /// The shape of one input row.
    pub fn row_shape(&self) -> Vec<i64> {
        self.train.x.size()[1..].to_vec()
    }

    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            train: self.train.to_device(device),
            val: self.val.as_ref().map(|split| split.to_device(device)),
            test: self.test.to_device(device),
            task: self.task,
            outputs: self.outputs,
            vocab: self.vocab,
        }
    }
}

/// What a source yields before normalisation.
pub(crate) struct RawData {
    pub train: Split,
    pub val: Option<Split>,
    pub test: Split,
}

/// Loads (or generates) the spec's dataset, on the CPU.
pub fn load(spec: &TrainerSpec, data_root: &Path) -> Result<Dataset, TrainError> {
    let resolve = |path: &str| data_root.join(path);
    let (raw, normalize, val_fraction) = match &spec.dataset {
        DatasetSpec::Npz {
            path,
            normalize,
            val_fraction,
        }
        | DatasetSpec::Digits {
            path,
            normalize,
            val_fraction,
        } => (files::npz(&resolve(path))?, *normalize, *val_fraction),
        DatasetSpec::Npy {
            x_train,
            y_train,
            x_test,
            y_test,
            x_val,
            y_val,
            normalize,
            val_fraction,
        } => {
            let pair = |x: &str, y: &str| -> Result<Split, TrainError> {
                Ok(Split {
                    x: files::npy(&resolve(x))?,
                    y: files::npy(&resolve(y))?,
                })
            };
            let val = match (x_val, y_val) {
                (Some(x), Some(y)) => Some(pair(x, y)?),
                _ => None,
            };
            let raw = RawData {
                train: pair(x_train, y_train)?,
                val,
                test: pair(x_test, y_test)?,
            };
            (raw, *normalize, *val_fraction)
        }
        DatasetSpec::Csv {
            train,
            test,
            val,
            target_column,
            normalize,
            val_fraction,
        } => {
            let read = |path: &str| files::csv(&resolve(path), target_column);
            let raw = RawData {
                train: read(train)?,
                val: val.as_deref().map(read).transpose()?,
                test: read(test)?,
            };
            (raw, *normalize, *val_fraction)
        }
        DatasetSpec::Idx {
            train_images,
            train_labels,
            test_images,
            test_labels,
            normalize,
            val_fraction,
        } => {
            let pair = |x: &str, y: &str| -> Result<Split, TrainError> {
                Ok(Split {
                    x: files::idx(&resolve(x))?,
                    y: files::idx(&resolve(y))?,
                })
            };
            let raw = RawData {
                train: pair(train_images, train_labels)?,
                val: None,
                test: pair(test_images, test_labels)?,
            };
            (raw, *normalize, *val_fraction)
        }
        DatasetSpec::Blobs(s) => (synthetic::blobs(s), false, s.val_fraction),
        DatasetSpec::Moons(s) => (synthetic::moons(s), false, s.val_fraction),
        DatasetSpec::Spirals(s) => (synthetic::spirals(s), false, s.val_fraction),
        DatasetSpec::Teacher(s) => (synthetic::teacher(s), false, s.val_fraction),
        DatasetSpec::Images(s) => (synthetic::images(s), false, s.val_fraction),
        DatasetSpec::Sequences(s) => (synthetic::sequences(s), false, s.val_fraction),
    };
    let tokens = matches!(spec.model, ModelSpec::Transformer { .. });
    finish(raw, spec.declared_task(), tokens, normalize, val_fraction)
}

fn is_integer(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 | Kind::Bool
    )
}

fn check_rows(name: &str, split: &Split) -> Result<(), TrainError> {
    let (x_rows, y_rows) = (
        split.x.size().first().copied(),
        split.y.size().first().copied(),
    );
    match (x_rows, y_rows) {
        (Some(x), Some(y)) if x == y && x > 0 => Ok(()),
        _ => Err(TrainError::Data(format!(
            "{name}: x has shape {:?} but y has shape {:?} (need the same, non-zero number of rows)",
            split.x.size(),
            split.y.size()
        ))),
    }
}

fn finish(
    raw: RawData,
    declared: Option<Task>,
    tokens: bool,
    normalize: bool,
    val_fraction: f64,
) -> Result<Dataset, TrainError> {
    let RawData {
        mut train,
        mut val,
        test,
    } = raw;
    check_rows("train", &train)?;
    check_rows("test", &test)?;
    if let Some(val) = &val {
        check_rows("val", val)?;
    }
    let row_shape = train.x.size()[1..].to_vec();
    for (name, split) in [("test", Some(&test)), ("val", val.as_ref())] {
        if let Some(split) = split {
            if split.x.size()[1..] != row_shape[..] {
                return Err(TrainError::Data(format!(
                    "{name} rows have shape {:?}, train rows {:?}",
                    &split.x.size()[1..],
                    row_shape
                )));
            }
        }
    }
    if val.is_none() && val_fraction > 0.0 {
        let (rest, held_out) = split_off(&train, val_fraction)?;
        train = rest;
        val = Some(held_out);
    }
    let task = declared.unwrap_or(if is_integer(train.y.kind()) {
        Task::Classification
    } else {
        Task::Regression
    });
    let mut test = test;
    let mut all: Vec<&mut Split> = vec![&mut train];
    if let Some(val) = val.as_mut() {
        all.push(val);
    }
    all.push(&mut test);

    let vocab = if tokens && is_integer(all[0].x.kind()) {
        let mut max = 0i64;
        for split in all.iter_mut() {
            split.x = split.x.to_kind(Kind::Int64);
            if split.x.min().int64_value(&[]) < 0 {
                return Err(TrainError::Data("token ids must be ≥ 0".into()));
            }
            max = max.max(split.x.max().int64_value(&[]));
        }
        Some(max as usize + 1)
    } else {
        for split in all.iter_mut() {
            split.x = split.x.to_kind(Kind::Float);
        }
        None
    };
    if normalize && vocab.is_none() {
        let mean = all[0].x.mean_dim(0, false, Kind::Float);
        let std = all[0].x.std_dim(0, false, false).clamp_min(1e-8);
        for split in all.iter_mut() {
            split.x = (&split.x - &mean) / &std;
        }
    }
    let outputs = match task {
        Task::Classification => {
            let mut max = 0i64;
            for split in all.iter_mut() {
                let y = split.y.to_kind(Kind::Double).flatten(0, -1);
                if y.numel() != split.rows() {
                    return Err(TrainError::Data(format!(
                        "classification needs one label per row, got y of shape {:?}",
                        split.y.size()
                    )));
                }
                let integral = y.eq_tensor(&y.round()).all().int64_value(&[]) == 1;
                if !integral || y.min().double_value(&[]) < 0.0 {
                    return Err(TrainError::Data(
                        "classification labels must be integers ≥ 0 (set `task: regression` for real-valued targets)".into(),
                    ));
                }
                split.y = y.to_kind(Kind::Int64);
                max = max.max(split.y.max().int64_value(&[]));
            }
            max as usize + 1
        }
        Task::Regression => {
            for split in all.iter_mut() {
                let rows = split.rows() as i64;
                split.y = split.y.to_kind(Kind::Float).reshape([rows, -1]);
            }
            all[0].y.size()[1] as usize
        }
    };
    if task == Task::Classification && outputs < 2 {
        return Err(TrainError::Data(
            "classification needs at least 2 classes".into(),
        ));
    }
    Ok(Dataset {
        train,
        val,
        test,
        task,
        outputs,
        vocab,
    })
}

/// Holds out `fraction` of the training rows, chosen by a fixed permutation so every
/// seed of an experiment validates on the same rows.
fn split_off(train: &Split, fraction: f64) -> Result<(Split, Split), TrainError> {
    let n = train.rows();
    let held = ((n as f64) * fraction).round() as usize;
    if held == 0 || held >= n {
        return Err(TrainError::Data(format!(
            "val_fraction {fraction} of {n} training rows leaves an empty split"
        )));
    }
    let mut order: Vec<i64> = (0..n as i64).collect();
    Rng::new(derive(0, &[purpose::SPLIT])).shuffle(&mut order);
    let keep = Tensor::from_slice(&order[..n - held]);
    let hold = Tensor::from_slice(&order[n - held..]);
    let take = |index: &Tensor| Split {
        x: train.x.index_select(0, index),
        y: train.y.index_select(0, index),
    };
    Ok((take(&keep), take(&hold)))
}
