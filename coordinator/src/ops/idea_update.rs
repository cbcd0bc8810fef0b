//! The `UpdateIdea` RPC: a researcher's or an agent's new idea version, recorded by
//! the coordinator while it serves the workspace ([`crate::stage::idea_update`]).

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::stage::feedback::AppliedUpdate;
use crate::stage::idea_update::{checked_reason, researcher_update, ResearcherUpdate};

impl CoordinatorState {
    /// The `UpdateIdea` RPC: a new idea version recorded by the coordinator itself.
    /// Refused while a stage runs (its jobs were expanded from the current version).
    pub fn update_idea(
        &mut self,
        update: ResearcherUpdate,
    ) -> Result<AppliedUpdate, CoordinatorError> {
        let reason = checked_reason(&update.reason).map_err(CoordinatorError::InvalidRequest)?;
        let running: Vec<String> = self
            .stage_runs
            .iter()
            .filter(|run| !run.finished)
            .map(|run| run.stage.to_string())
            .collect();
        if !running.is_empty() {
            return Err(CoordinatorError::Conflict(format!(
                "stage {} is running against idea version {}: wait for it or cancel it before updating the idea",
                running.join(", "),
                self.idea_version
            )));
        }
        let workspace = self.workspace.clone();
        researcher_update(&workspace, self, ResearcherUpdate { reason, ..update })
            .map_err(|err| CoordinatorError::Storage(err.to_string()))
    }
}
