//! A researcher's or an agent's own change to the idea: `expcluster idea update`
//! (which holds the workspace lock and writes the files itself), `expcluster mcp`'s
//! `idea_update` tool, and the coordinator's `UpdateIdea` RPC
//! ([`crate::ops::idea_update`]: the coordinator owns the files while it serves the
//! workspace) all go through [`researcher_update`],
//! the same protocol the feedback after a stage runs: version bump, idea_evolution.md
//! entry with the diff, `idea_updated` event with the reason.

use crate::stage::feedback::{apply_update, AppliedUpdate, EventSink, FeedbackError, IdeaUpdate};
use crate::stage::idea::{read_idea_json, version_of};
use crate::store::workspace::Workspace;

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
/// [`crate::stage::feedback::FileSink`]), or it is the coordinator (`sink` its state).
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
