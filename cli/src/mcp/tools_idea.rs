//! idea_update and idea_log: the agent's own changes to the idea, recorded by the
//! same protocol as `expcluster idea update` (version bump, idea_evolution.md entry
//! with the diff, `idea_updated` event with the reason), and the idea's history.

use super::resources::inside;
use super::server::{failure, ExpclusterMcp};
use crate::commands::idea::{checked_reason, IdeaHistory, ResearcherUpdate};
use anyhow::bail;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdeaUpdateArgs {
    /// Why the idea changes: the evidence and what follows from it (required; it is
    /// recorded in idea.json, idea_evolution.md and the research log).
    pub reason: String,
    /// The new idea.md in full. Without it (and without `from`), idea.md as it is now
    /// on disk, edited in place.
    #[serde(default)]
    pub idea_md: Option<String>,
    /// Or a file of the workspace holding the new idea.md, by its path relative to
    /// the workspace.
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct IdeaUpdated {
    pub from_version: u32,
    pub to_version: u32,
    /// The `idea_updated` event's `seq` in research_log.jsonl.
    pub event_seq: u64,
    /// The unified diff of idea.md, when the previous version's text was known.
    pub diff: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoIdeaArgs {}

#[tool_router(router = idea_tools, vis = "pub(super)")]
impl ExpclusterMcp {
    /// Record a new version of the idea with the reason for it (after a contradicted
    /// claim, say): bumps idea.json's version, adds an idea_evolution.md entry with
    /// the diff, logs `idea_updated`. Stages submitted afterwards run against it.
    #[tool]
    async fn idea_update(
        &self,
        Parameters(args): Parameters<IdeaUpdateArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<IdeaUpdated>, String> {
        let run = async {
            let reason = checked_reason(&args.reason)?;
            let root = self.backend.workspace()?;
            let (new_idea_md, what_changed) = match (args.idea_md, args.from.as_deref()) {
                (Some(_), Some(_)) => bail!("give the new idea.md as idea_md or as a file (from), not both"),
                (Some(text), None) => (Some(text), "idea.md replaced by the agent's new text (diff below).".to_owned()),
                (None, Some(from)) => {
                    let path = inside(root, from).map_err(anyhow::Error::msg)?;
                    let text = std::fs::read_to_string(&path)
                        .map_err(|err| anyhow::anyhow!("cannot read {from}: {err}"))?;
                    (Some(text), format!("idea.md replaced by {from} (diff below)."))
                }
                (None, None) => (None, "idea.md as edited in place (diff below, against the previous version's snapshot).".to_owned()),
            };
            let client = context
                .peer
                .peer_info()
                .map(|info| info.client_info.name.clone())
                .unwrap_or_else(|| "an MCP client".to_owned());
            let applied = self
                .backend
                .update_idea(ResearcherUpdate {
                    reason,
                    source: format!("agent ({client}, through `expcluster mcp`)"),
                    new_idea_md,
                    what_changed,
                })
                .await?;
            Ok(IdeaUpdated {
                from_version: applied.from_version,
                to_version: applied.to_version,
                event_seq: applied.event_seq,
                diff: applied.diff,
            })
        };
        run.await.map(Json).map_err(failure)
    }

    /// Every version of the idea: when, by whom, why, and each version's diff.
    #[tool]
    async fn idea_log(
        &self,
        Parameters(NoIdeaArgs {}): Parameters<NoIdeaArgs>,
    ) -> Result<Json<IdeaHistory>, String> {
        let run = || -> anyhow::Result<IdeaHistory> {
            crate::commands::idea::history(self.backend.workspace()?)
        };
        run().map(Json).map_err(failure)
    }
}
