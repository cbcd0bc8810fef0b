//! Domain types of expcluster, shared by the coordinator, the workers and the CLI.
//!
//! Nothing here does I/O beyond reading a config file: the experiment definition
//! (`config.yaml`), its limits and its validation, the expansion of a stage into jobs
//! with stable ids and fingerprints, typed ids, and the `NAME: VALUE` metric-line
//! grammar.

pub mod config;
pub mod config_error;
pub mod config_limits;
#[cfg(test)]
mod config_limits_tests;
pub mod config_locate;
mod config_validate;
pub mod expand;
pub mod ids;
pub mod job_matrix;
pub mod json_float;
pub mod metric_line;
pub mod npy;
pub mod overrides;
pub mod trainer_spec;

pub use config::ExperimentConfig;
pub use config_error::ConfigError;
pub use expand::{expand_stage, JobDefinition, StageRequest, VariantKind};
pub use ids::{AttemptNumber, JobId, Stage, WorkerId};
