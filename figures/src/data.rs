//! Reading what the coordinator wrote: `experiment_results/index.json` (which array
//! holds which stage, variant, sweep point and metric), the `.npy` arrays, and the
//! primary metric from `config.yaml`.

use crate::FiguresError;
use expcluster_core::config::Goal;
use expcluster_core::{ExperimentConfig, Stage};
use ndarray::{Array1, Array2};
use ndarray_npy::ReadNpyExt;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the index says about one array.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayEntry {
    pub file: String,
    pub variant: String,
    pub sweep_point: String,
    pub metric: String,
    pub kind: ArrayKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    /// 1-D: the final value of each seed (NaN for a failed seed).
    FinalPerSeed,
    /// 2-D: seeds × steps, NaN-padded.
    Curves,
}

impl ArrayEntry {
    /// `proposed`, or `proposed (lr=0.001)` at a sweep point (the last part of each
    /// swept path is enough to tell points apart and keeps legends short).
    pub fn label(&self) -> String {
        if self.sweep_point.is_empty() || self.sweep_point == "base" {
            return self.variant.clone();
        }
        let short: Vec<&str> = self
            .sweep_point
            .split(',')
            .map(|part| part.rsplit_once('.').map_or(part, |(_, tail)| tail))
            .collect();
        format!("{} ({})", self.variant, short.join(", "))
    }
}

/// `experiment_results/index.json`.
pub struct ResultIndex {
    entries: Vec<(String, ArrayEntry)>,
}

impl ResultIndex {
    pub fn read(workspace: &Path) -> Result<Self, FiguresError> {
        let path = workspace.join("experiment_results").join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    entries: Vec::new(),
                })
            }
            Err(err) => return Err(read_error(&path, err)),
        };
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| read_error(&path, err))?;
        let mut entries = Vec::new();
        for (file, entry) in value.as_object().into_iter().flatten() {
            let kind = match entry["kind"].as_str() {
                Some("final_per_seed") => ArrayKind::FinalPerSeed,
                Some("curves_seeds_by_step") => ArrayKind::Curves,
                _ => continue,
            };
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            entries.push((
                text("stage"),
                ArrayEntry {
                    file: file.clone(),
                    variant: text("variant"),
                    sweep_point: text("sweep_point"),
                    metric: text("metric"),
                    kind,
                },
            ));
        }
        Ok(Self { entries })
    }

    /// The arrays of one stage, in the order the index lists them (expansion order).
    pub fn of_stage(&self, stage: Stage) -> Vec<ArrayEntry> {
        self.entries
            .iter()
            .filter(|(s, _)| s == stage.as_str())
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// The primary metric and its goal, when config.yaml loads.
#[derive(Debug, Clone)]
pub struct Primary {
    pub name: String,
    pub higher_is_better: bool,
}

pub fn primary_metric(workspace: &Path) -> Option<Primary> {
    let loaded = ExperimentConfig::load(&workspace.join("config.yaml")).ok()?;
    let primary = &loaded.config.primary_metric;
    Some(Primary {
        name: primary.name.clone(),
        higher_is_better: primary.goal == Goal::Max,
    })
}

pub fn array_path(workspace: &Path, entry: &ArrayEntry) -> PathBuf {
    workspace.join("experiment_results").join(&entry.file)
}

pub fn read_1d(path: &Path) -> Result<Vec<f64>, FiguresError> {
    let file = std::fs::File::open(path).map_err(|err| read_error(path, err))?;
    let array = Array1::<f64>::read_npy(file).map_err(|err| read_error(path, err))?;
    Ok(array.to_vec())
}

/// Rows are seeds; NaN padding is kept (the caller skips it).
pub fn read_2d(path: &Path) -> Result<Vec<Vec<f64>>, FiguresError> {
    let file = std::fs::File::open(path).map_err(|err| read_error(path, err))?;
    let array = Array2::<f64>::read_npy(file).map_err(|err| read_error(path, err))?;
    Ok(array.rows().into_iter().map(|row| row.to_vec()).collect())
}

fn read_error(path: &Path, err: impl std::fmt::Display) -> FiguresError {
    FiguresError::Read {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}

/// The proposed method's name (the ablations stage's reference), when config.yaml loads.
pub fn proposed_method(workspace: &Path) -> Option<String> {
    let loaded = ExperimentConfig::load(&workspace.join("config.yaml")).ok()?;
    Some(loaded.config.proposed_method().to_owned())
}
