//! A researcher's or an agent's own change to the idea: `expcluster idea update`
//! (which holds the workspace lock and writes the files itself), `expcluster mcp`'s
//! `idea_update` tool, and the coordinator's `UpdateIdea` RPC (the coordinator owns
//! the files while it serves the workspace) all go through [`researcher_update`],
//! the same protocol the feedback after a stage runs: version bump, idea_evolution.md
//! entry with the diff, `idea_updated` event with the reason.

use crate::error::CoordinatorError;
use crate::feedback::{apply_update, AppliedUpdate, EventSink, FeedbackError, IdeaUpdate};
use crate::idea::{read_idea_json, version_of};
use crate::state::CoordinatorState;
use crate::workspace::Workspace;

/// A researcher's (or an agent's) change to the idea.
pub struct ResearcherUpdate {
    /// Why, already checked by [`checked_reason`].
    pub reason: String,
    /// Who: `researcher (…)`, recorded in the `idea_updated` event.
    pub source: String,
    /// The new idea.md; `None` keeps idea.md as edited in place.
    pub new_idea_md: Option<String>,
    /// What changed, in words (the evolution entry's first line).
    pub what_changed: String,
}

/// The reason, trimmed; an empty one is refused (it is the record future readers
/// rely on).
pub fn checked_reason(reason: &str) -> Result<String, String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(
            "the reason is empty: say why the idea changes (it is the record future readers rely on)"
                .to_owned(),
        );
    }
    Ok(reason.to_owned())
}

/// Records a new version of the idea through the feedback protocol. The caller owns
/// the workspace: it holds the workspace lock (`sink` a
/// [`crate::feedback::FileSink`]), or it is the coordinator (`sink` its state).
pub fn researcher_update(
    workspace: &Workspace,
    sink: &mut dyn EventSink,
    update: ResearcherUpdate,
) -> Result<AppliedUpdate, FeedbackError> {
    let next = version_of(&read_idea_json(workspace)) + 1;
    let update = IdeaUpdate {
        reason: update.reason,
        source: update.source,
        new_idea_md: update.new_idea_md,
        what_changed: vec![update.what_changed],
        impact: format!("stages submitted from now on run against version {next}."),
        ..IdeaUpdate::default()
    };
    apply_update(workspace, sink, update)
}

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
