//! `expcluster mcp`: the Model Context Protocol server an AI research agent drives
//! expcluster through, instead of parsing the CLI's output.
//!
//! Built on the official Rust SDK (`rmcp`). Every tool is a thin call into what the
//! CLI commands do (`crate::commands::*` return data that both their printers and
//! these tools use) and answers with structured JSON and its schema; a failure is a
//! tool error (`isError`) whose text says what to do, and changes nothing.
//!
//! One server serves one workspace, fixed at start: local, with an embedded
//! coordinator and local workers started at the first tool that needs them and kept
//! for the server's life (so `submit` returns at once while the stage runs on), or
//! through `--coordinator host:port`. Resources expose the workspace's own files by
//! URI and never anything outside it ([`resources`]). It speaks stdio by default, or
//! Streamable HTTP with `--listen`, behind the client token ([`http`]).

mod backend;
mod http;
mod resources;
mod server;
mod tools_idea;
mod tools_read;
mod tools_run;

use crate::commands::{CoordinatorArgs, WorkspaceArgs};
use anyhow::Context;
use backend::Backend;
use clap::Args;
use rmcp::ServiceExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct McpArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Serve Streamable HTTP on this loopback address (at /mcp) instead of stdio;
    /// clients must send the workspace's client token (`Authorization: Bearer …`).
    /// Plain HTTP: other addresses are refused (use an SSH tunnel).
    #[arg(long)]
    pub listen: Option<String>,
    #[command(flatten)]
    pub local: crate::commands::submit::LocalWorkersArgs,
}

pub async fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let backend = Arc::new(Backend::new(workspace_root(&args.workspace), &args)?);
    let result = match &args.listen {
        Some(listen) => http::serve(backend.clone(), &args, listen).await,
        None => serve_stdio(backend.clone()).await,
    };
    backend.shutdown().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// Serves one client on stdin/stdout until it closes them.
async fn serve_stdio(backend: Arc<Backend>) -> anyhow::Result<()> {
    let running = server::ExpclusterMcp::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not complete the handshake")?;
    tokio::select! {
        ended = running.waiting() => { ended.context("the MCP server stopped")?; }
        () = crate::embedded::shutdown_signal() => {}
    }
    Ok(())
}

/// The workspace this server serves: `--workspace DIR` (which may not exist yet: the
/// `init` tool creates it), `--idea NAME` (experiments/NAME), else the usual search
/// (the current directory, or the only idea under experiments/).
fn workspace_root(args: &WorkspaceArgs) -> anyhow::Result<PathBuf> {
    let named = match (&args.workspace, &args.idea) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(idea)) => Some(PathBuf::from("experiments").join(idea)),
        (None, None) => None,
    };
    let Some(dir) = named else {
        return crate::workspace_arg::resolve(None, None).map_err(|err| {
            err.context("pass --workspace DIR (it may not exist yet: the init tool creates it)")
        });
    };
    let absolute =
        std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    // An existing workspace by its real path, so the resources' containment check
    // compares like with like.
    Ok(absolute.canonicalize().unwrap_or(absolute))
}
