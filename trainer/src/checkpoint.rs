//! Checkpoints: everything a requeued attempt needs to continue exactly where the
//! last one stopped. One checkpoint is a directory `ckpt-<global step>` holding the
//! model (`model.ot`), the optimizer buffers (`optimizer.ot`) and the loop state with
//! the metric history (`state.json`).
//!
//! Invariant: a directory named `ckpt-*` is complete. It is written as
//! `.tmp-ckpt-*`, every file fsynced, then renamed and the parent fsynced; older
//! checkpoints are removed only after the new one is in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

use crate::npy::{sync_dir, write_atomic};
use crate::optim::Optimizer;
use crate::TrainError;

/// The training loop's position and history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Identifies the spec and seed that wrote it; a different job must not resume it.
    pub fingerprint: String,
    /// Completed epochs.
    pub epoch: usize,
    /// Steps already done in the epoch in progress (0 at an epoch boundary).
    pub step_in_epoch: usize,
    /// Sum of batch-size-weighted training losses of the epoch in progress.
    #[serde(with = "exact")]
    pub partial_loss_sum: f64,
    pub partial_samples: usize,
    pub global_step: u64,
    pub optimizer_steps: i64,
    /// One value per completed epoch, per metric.
    #[serde(with = "exact")]
    pub history: BTreeMap<String, Vec<f64>>,
    /// Early stopping: best value so far and epochs since it improved.
    #[serde(with = "exact")]
    pub best: Option<f64>,
    pub epochs_since_best: usize,
    pub stopped_early: bool,
}

impl TrainState {
    pub fn fresh(fingerprint: String) -> TrainState {
        TrainState {
            fingerprint,
            epoch: 0,
            step_in_epoch: 0,
            partial_loss_sum: 0.0,
            partial_samples: 0,
            global_step: 0,
            optimizer_steps: 0,
            history: BTreeMap::new(),
            best: None,
            epochs_since_best: 0,
            stopped_early: false,
        }
    }
}

/// Floats stored as their shortest round-trip decimal strings and parsed back with
/// Rust's correctly rounded parser: serde_json's default float parsing may be off by
/// one ulp, which would make a resumed run's arrays differ from an uninterrupted one.
mod exact {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub trait Exact: Sized {
        type Text: Serialize + for<'de> Deserialize<'de>;
        fn to_text(&self) -> Self::Text;
        fn from_text(text: Self::Text) -> Result<Self, String>;
    }

    fn parse(text: &str) -> Result<f64, String> {
        text.parse().map_err(|_| format!("`{text}` is not a float"))
    }

    impl Exact for f64 {
        type Text = String;
        fn to_text(&self) -> String {
            format!("{self:?}")
        }
        fn from_text(text: String) -> Result<f64, String> {
            parse(&text)
        }
    }

    impl Exact for Option<f64> {
        type Text = Option<String>;
        fn to_text(&self) -> Option<String> {
            self.map(|value| format!("{value:?}"))
        }
        fn from_text(text: Option<String>) -> Result<Self, String> {
            text.as_deref().map(parse).transpose()
        }
    }

    impl Exact for super::BTreeMap<String, Vec<f64>> {
        type Text = super::BTreeMap<String, Vec<String>>;
        fn to_text(&self) -> Self::Text {
            self.iter()
                .map(|(name, values)| {
                    (
                        name.clone(),
                        values.iter().map(|v| format!("{v:?}")).collect(),
                    )
                })
                .collect()
        }
        fn from_text(text: Self::Text) -> Result<Self, String> {
            text.into_iter()
                .map(|(name, values)| {
                    Ok((
                        name,
                        values.iter().map(|v| parse(v)).collect::<Result<_, _>>()?,
                    ))
                })
                .collect()
        }
    }

    pub fn serialize<T: Exact, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        value.to_text().serialize(serializer)
    }

    pub fn deserialize<'de, T: Exact, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        T::from_text(T::Text::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

const PREFIX: &str = "ckpt-";

fn sync_file(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(TrainError::io(path))
}

/// Writes a checkpoint of the current state, then prunes older ones.
pub fn save(
    dir: &Path,
    state: &TrainState,
    vs: &VarStore,
    optimizer: &Optimizer,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let name = format!("{PREFIX}{:012}", state.global_step);
    let temp = dir.join(format!(".tmp-{name}"));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(TrainError::io(&temp))?;
    }
    std::fs::create_dir_all(&temp).map_err(TrainError::io(&temp))?;
    let model = temp.join("model.ot");
    vs.save(&model)?;
    sync_file(&model)?;
    let optim = temp.join("optimizer.ot");
    Tensor::save_multi(&optimizer.named_state(), &optim)?;
    sync_file(&optim)?;
    let json =
        serde_json::to_vec_pretty(state).map_err(|err| TrainError::Checkpoint(err.to_string()))?;
    write_atomic(&temp.join("state.json"), &json)?;
    let target = dir.join(&name);
    if target.exists() {
        // The same step checkpointed twice (a cancel right after a periodic save).
        std::fs::remove_dir_all(&target).map_err(TrainError::io(&target))?;
    }
    std::fs::rename(&temp, &target).map_err(TrainError::io(&target))?;
    sync_dir(dir)?;
    for old in complete_checkpoints(dir)? {
        if old != target {
            std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
        }
    }
    Ok(target)
}

/// Complete checkpoint directories, oldest first.
fn complete_checkpoints(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(TrainError::io(dir))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|entry| entry.path())
        .filter(|path| path.join("state.json").exists())
        .collect();
    found.sort();
    Ok(found)
}

/// A loaded checkpoint; the model is already restored into the var store.
pub struct Restored {
    pub state: TrainState,
    pub optimizer_state: Vec<(String, Tensor)>,
}

/// Restores the newest checkpoint in `dir` into `vs`, if there is one.
pub fn load_latest(
    dir: &Path,
    vs: &mut VarStore,
    fingerprint: &str,
) -> Result<Option<Restored>, TrainError> {
    let Some(latest) = complete_checkpoints(dir)?.pop() else {
        return Ok(None);
    };
    let state_path = latest.join("state.json");
    let bytes = std::fs::read(&state_path).map_err(TrainError::io(&state_path))?;
    let state: TrainState = serde_json::from_slice(&bytes)
        .map_err(|err| TrainError::Checkpoint(format!("{}: {err}", state_path.display())))?;
    if state.fingerprint != fingerprint {
        return Err(TrainError::Checkpoint(format!(
            "{} was written by a different trainer spec or seed; point the job at an empty checkpoint directory",
            latest.display()
        )));
    }
    vs.load(latest.join("model.ot"))?;
    let optimizer_state = Tensor::load_multi_with_device(latest.join("optimizer.ot"), Device::Cpu)?;
    Ok(Some(Restored {
        state,
        optimizer_state,
    }))
}
