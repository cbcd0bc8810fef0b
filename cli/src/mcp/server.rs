//! The MCP handler: the tools of `tools_*.rs`, combined in one router, and the
//! workspace's files as resources.

use super::backend::Backend;
use super::resources;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};
use std::sync::Arc;

const INSTRUCTIONS: &str = "expcluster runs an ML research idea's experiments in four stages \
(implementation, baselines, full, ablations), writes each stage's summary, and tests the claims \
of config.yaml on the results. A loop: validate; submit a stage (it returns at once); wait for \
it (progress notifications while it runs); read summary and claims; when a claim is \
contradicted, record the new idea with idea_update and a reason; submit the next stage. \
Resources give the workspace's idea.md, idea.json, idea_evolution.md, summaries and \
research_log.jsonl.";

/// One client's handler; the clones of a server share its backend.
#[derive(Clone)]
pub struct ExpclusterMcp {
    pub(super) backend: Arc<Backend>,
    tool_router: ToolRouter<Self>,
}

impl ExpclusterMcp {
    pub fn new(backend: Arc<Backend>) -> Self {
        Self {
            backend,
            tool_router: Self::run_tools() + Self::read_tools() + Self::idea_tools(),
        }
    }
}

/// A tool's failure as the text the agent reads (with its causes).
pub(super) fn failure(err: anyhow::Error) -> String {
    format!("{err:#}")
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ExpclusterMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("expcluster", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let root = self.backend.workspace_path().map_err(not_found)?;
        Ok(ListResourcesResult::with_all_items(resources::list(root)))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            resources::template(),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let root = self.backend.workspace_path().map_err(not_found)?;
        let contents = resources::read(root, &request.uri)
            .map_err(|reason| ErrorData::resource_not_found(reason, None))?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

fn not_found(err: anyhow::Error) -> ErrorData {
    ErrorData::resource_not_found(failure(err), None)
}
