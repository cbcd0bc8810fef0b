//! The figures of an experiment workspace, as PNG files under `figures/`.
//!
//! Every figure is drawn from files the coordinator already wrote, never from its
//! memory, so `expcluster plot` can redraw them at any time and the coordinator can
//! draw them when a stage finishes:
//! - `<stage>_<metric>_curves.png`: learning curves per method, the mean over seeds
//!   with a ±1 std band (from `experiment_results/*_curves.npy`);
//! - `<stage>_<metric>_final.png`: the final value of the primary metric per method,
//!   bars at the mean with 95% Student-t intervals (from the per-seed `.npy` arrays);
//! - `ablation_impact.png`: each ablation's change of the primary metric against the
//!   unablated method, with the 95% t interval of the difference (paired by seed).
//!
//! Text is drawn with DejaVu Sans compiled into the binary (the `dejavu` crate and
//! plotters' `ab_glyph` backend), so a fresh machine without system fonts renders
//! the same pictures. Every size is fixed ([`WIDTH`] × [`HEIGHT`]) so tests and
//! reports can rely on it. Files are replaced atomically.

mod ablation;
mod bars;
mod curves;
mod data;
mod hbars;
mod render;

pub use render::{HEIGHT, WIDTH};

use expcluster_core::Stage;
use std::path::Path;

/// Why figures could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("cannot draw {figure}: {message}")]
    Draw { figure: String, message: String },
}

/// Draws the figures of one stage from its result files; returns the files written,
/// relative to the workspace (empty when the stage has no results yet).
pub fn write_stage_figures(workspace: &Path, stage: Stage) -> Result<Vec<String>, FiguresError> {
    let index = data::ResultIndex::read(workspace)?;
    let entries = index.of_stage(stage);
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let primary = data::primary_metric(workspace);
    let mut written = Vec::new();
    written.extend(curves::write(workspace, stage, &entries)?);
    written.extend(bars::write(workspace, stage, &entries, primary.as_ref())?);
    if stage == Stage::Ablations {
        written.extend(ablation::write(workspace, &entries, primary.as_ref())?);
    }
    Ok(written)
}

/// Draws the figures of every stage that has results.
pub fn write_all_figures(workspace: &Path) -> Result<Vec<String>, FiguresError> {
    let mut written = Vec::new();
    for stage in Stage::ALL {
        written.extend(write_stage_figures(workspace, stage)?);
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
