//! Aggregating a finished stage run: every job's results line read back, the stage's
//! arrays, summary and figures written. Runs outside the state lock; the operations
//! in [`crate::ops::stages`] take the run and record what this wrote.

use crate::error::CoordinatorError;
use crate::stage::results::{write_stage_results, JobOutcome};
use crate::store::results_file::{LineRef, ResultsReader};
use crate::store::workspace::Workspace;
use expcluster_core::config::LoadedConfig;
use expcluster_core::{ExperimentConfig, JobDefinition, Stage};
use std::sync::Arc;

/// A stage run whose jobs are all final, with what aggregating it needs. Taken under
/// the state lock (cheap: shared definitions and the places of the results lines),
/// aggregated without it ([`Self::aggregate`]: reading every results line, the
/// statistics, arrays, summary and figures), then recorded under it again
/// ([`CoordinatorState::record_finished_stage`]).
#[derive(Debug)]
pub struct StageToFinish {
    pub run_id: u64,
    pub stage: Stage,
    pub workspace: Workspace,
    pub results: ResultsReader,
    pub jobs: Vec<JobToAggregate>,
}

#[derive(Debug)]
pub struct JobToAggregate {
    pub def: Arc<JobDefinition>,
    pub succeeded: bool,
    pub error: String,
    pub line: Option<LineRef>,
}

/// A stage run's outcomes and the files written for it, to be recorded.
#[derive(Debug)]
pub struct AggregatedStage {
    pub run_id: u64,
    pub stage: Stage,
    pub loaded: LoadedConfig,
    pub outcomes: Vec<JobOutcome>,
    pub outputs: Vec<String>,
    pub figures: Vec<String>,
}

impl StageToFinish {
    /// Reads every job's results line and writes the stage's arrays, summary and
    /// figures. Touches nothing the state lock guards.
    pub fn aggregate(self) -> Result<AggregatedStage, CoordinatorError> {
        self.results
            .wait_appended()
            .map_err(CoordinatorError::storage)?;
        let loaded = ExperimentConfig::load(&self.workspace.config_path())
            .map_err(|err| CoordinatorError::Config(err.to_string()))?;
        let outcomes: Vec<JobOutcome> = self
            .jobs
            .iter()
            .map(|job| {
                let stored = match job.line.map(|at| self.results.read(at)) {
                    Some(Ok(stored)) => Some(stored),
                    Some(Err(err)) => {
                        tracing::error!(job = %job.def.id, %err, "cannot read the job's results line");
                        None
                    }
                    None => None,
                };
                JobOutcome::from_stored(&job.def, job.succeeded, &job.error, stored)
            })
            .collect();
        let outputs = write_stage_results(&self.workspace, &loaded, self.stage, &outcomes)
            .map_err(CoordinatorError::storage)?;
        let figures = expcluster_figures::write_stage_figures(self.workspace.root(), self.stage)
            .unwrap_or_else(|err| {
                tracing::warn!(%err, "cannot draw the stage's figures");
                Vec::new()
            });
        Ok(AggregatedStage {
            run_id: self.run_id,
            stage: self.stage,
            loaded,
            outcomes,
            outputs,
            figures,
        })
    }
}
