//! `expcluster mcp --listen`: the MCP over Streamable HTTP at `/mcp`, behind the
//! workspace's client token.
//!
//! Every request must carry `Authorization: Bearer <client token>`, the token the CLI
//! uses with the coordinator: none (or an unknown token) is refused with 401, the
//! worker token with 403 (workers run jobs; they do not submit them). The token is
//! compared in constant time by [`Token::matches`]. The transport is plain HTTP, so it
//! serves loopback addresses only ([`check_loopback`]): from another machine, reach it
//! through an SSH tunnel.

use super::backend::Backend;
use super::server::ExpclusterMcp;
use super::McpArgs;
use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use expcluster_coordinator::service::auth::{
    read_token_file, Token, TokenPolicy, Tokens, TOKEN_DIR,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

/// The tokens a request is checked against.
#[derive(Clone)]
struct Gate {
    client: Token,
    /// Known when the workspace is at hand: named in the refusal.
    worker: Option<Token>,
}

pub async fn serve(backend: Arc<Backend>, args: &McpArgs, listen: &str) -> anyhow::Result<()> {
    let gate = gate(&backend, args)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    check_loopback(address)?;
    let config = StreamableHttpServerConfig::default();
    // Cancelled at shutdown: every session ends with the server.
    let stop = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        move || Ok(ExpclusterMcp::new(backend.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(gate, check_token));
    // On stdout, as the coordinator announces its address (stdout is no protocol here).
    println!("expcluster mcp: listening on http://{address}/mcp (send the client token as `Authorization: Bearer …`)");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::embedded::shutdown_signal().await;
            stop.cancel();
        })
        .await
        .context("the MCP HTTP server stopped")
}

/// Plain HTTP only on loopback: the client token would cross the network in clear,
/// and whoever reads it drives the research loop (and the jobs' commands). Checked
/// on the bound address, before anything is served.
fn check_loopback(address: std::net::SocketAddr) -> anyhow::Result<()> {
    if address.ip().is_loopback() {
        return Ok(());
    }
    bail!(
        "refusing to serve MCP on {address}: --listen speaks plain HTTP, so the client token would cross the network in clear; listen on 127.0.0.1 (e.g. --listen 127.0.0.1:8765) and reach it from elsewhere through an SSH tunnel (ssh -L 8765:127.0.0.1:8765 this-host)"
    )
}

async fn check_token(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b""));
    let refusal = match presented {
        None => Some((
            StatusCode::UNAUTHORIZED,
            "this MCP server requires the client token: send `Authorization: Bearer <the workspace's .expcluster/client.token>`",
        )),
        Some(token) if gate.client.matches(token) => None,
        Some(token) if gate.worker.as_ref().is_some_and(|worker| worker.matches(token)) => Some((
            StatusCode::FORBIDDEN,
            "a worker token cannot drive the research loop: use the client token (.expcluster/client.token)",
        )),
        Some(_) => Some((
            StatusCode::UNAUTHORIZED,
            "the token is not valid for this server: use the workspace's current .expcluster/client.token",
        )),
    };
    match refusal {
        Some((status, message)) => {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], message).into_response()
        }
        None => next.run(request).await,
    }
}

/// The tokens: the workspace's (the embedded coordinator's own), or, with a remote
/// coordinator, the client token the CLI would send it.
fn gate(backend: &Backend, args: &McpArgs) -> anyhow::Result<Gate> {
    if backend.is_embedded() {
        let root = backend.workspace()?;
        let tokens = Tokens::load_or_create(root, TokenPolicy::FirstStartOnly)?;
        return Ok(Gate {
            client: tokens.client,
            worker: Some(tokens.worker),
        });
    }
    let workspace_token = |role: &str| {
        backend
            .workspace_path()
            .ok()
            .map(|root| root.join(TOKEN_DIR).join(format!("{role}.token")))
            .filter(|file| file.is_file())
    };
    let client = if let Some(file) = &args.connect.token_file {
        read_token_file(file)?
    } else if let Ok(text) = std::env::var("EXPCLUSTER_TOKEN") {
        Token::parse(&text)?
    } else if let Some(file) = std::env::var_os("EXPCLUSTER_TOKEN_FILE") {
        read_token_file(std::path::Path::new(&file))?
    } else if let Some(file) = workspace_token("client") {
        read_token_file(&file)?
    } else {
        bail!("--listen needs the client token its clients must send: pass --token-file (the coordinator's .expcluster/client.token) or --workspace");
    };
    let worker = workspace_token("worker")
        .map(|file| read_token_file(&file))
        .transpose()?;
    Ok(Gate { client, worker })
}
