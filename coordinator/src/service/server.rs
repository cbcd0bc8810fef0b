//! Serving the coordinator over gRPC on an already-bound listener, behind the checks
//! every call goes through: the token and its role ([`crate::service::auth_layer`]), then the
//! protocol version; optionally over TLS or mutual TLS ([`crate::service::tls`]).

use crate::service::auth::Authenticator;
use crate::service::auth_layer::AuthLayer;
use crate::service::{ClientApi, WorkerApi};
use crate::Coordinator;
use expcluster_proto::v1::client_service_server::ClientServiceServer;
use expcluster_proto::v1::worker_service_server::WorkerServiceServer;
use expcluster_proto::{MAX_MESSAGE_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Status};

/// Refuses calls from peers speaking another protocol version: a stale binary fails
/// loudly at its first call instead of misreading messages.
#[allow(clippy::result_large_err)]
pub fn check_protocol(request: Request<()>) -> Result<Request<()>, Status> {
    let version = request
        .metadata()
        .get(PROTOCOL_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u32>().ok());
    match version {
        Some(PROTOCOL_VERSION) => Ok(request),
        Some(other) => Err(Status::failed_precondition(format!(
            "protocol version {other} is not supported; this coordinator speaks {PROTOCOL_VERSION}: use the same expcluster version on every node"
        ))),
        None => Err(Status::failed_precondition(format!(
            "missing {PROTOCOL_HEADER} header: use an expcluster client of protocol version {PROTOCOL_VERSION}"
        ))),
    }
}

/// How the coordinator checks its callers.
#[derive(Debug, Clone)]
pub struct ServerSecurity {
    pub auth: Authenticator,
    pub tls: Option<ServerTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to serve {0} without authentication: --insecure-no-auth works on a loopback address only (127.0.0.1 or ::1)")]
    OpenToTheNetwork(SocketAddr),
    #[error("cannot read the listener's address: {0}")]
    Address(std::io::Error),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Whether `address` may be served with `auth`: without tokens, only loopback.
pub fn check_listen_address(address: SocketAddr, auth: &Authenticator) -> Result<(), ServeError> {
    if auth.is_enabled() || address.ip().is_loopback() {
        Ok(())
    } else {
        Err(ServeError::OpenToTheNetwork(address))
    }
}

/// Serves until `shutdown` resolves. The listener is bound by the caller (tests bind
/// `127.0.0.1:0` and read the port before starting).
pub async fn serve(
    listener: TcpListener,
    coordinator: Arc<Coordinator>,
    security: ServerSecurity,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let address = listener.local_addr().map_err(ServeError::Address)?;
    check_listen_address(address, &security.auth)?;
    // Appends defer their fsync from here on; the commit layer answers after it.
    crate::store::group_commit::enable();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = security.tls {
        builder = builder.tls_config(tls)?;
    }
    // Finished stages are aggregated off the state lock from here on.
    let finisher = coordinator.start_stage_finisher();
    let reaper = tokio::spawn(
        coordinator
            .clone()
            .run_lease_reaper(Duration::from_millis(250)),
    );
    // Worker sessions are streams that never end on their own: told here when the
    // shutdown starts, they end, so the graceful shutdown does not wait for them.
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    let workers = WorkerServiceServer::new(WorkerApi {
        coordinator: coordinator.clone(),
        closing,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let clients = ClientServiceServer::new(ClientApi {
        coordinator: coordinator.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let result = builder
        .layer(AuthLayer::new(security.auth))
        .layer(crate::service::commit_layer::layer())
        .add_service(InterceptedService::new(workers, check_protocol))
        .add_service(InterceptedService::new(clients, check_protocol))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    reaper.abort();
    // A stage already handed over is recorded before serving ends; later ones finish
    // at once (or, after a stop, when the next coordinator recovers).
    coordinator.lock().stage_finisher = None;
    if let Err(err) = finisher.await {
        tracing::error!(%err, "the stage finisher stopped");
    }
    // Records appended behind since the last answer (an event no call waited for)
    // are written before serving ends, as they would have been without deferral.
    if let Some(ticket) = crate::service::commit_layer::ticket() {
        if let Err(reason) = crate::store::group_commit::global().wait(ticket).await {
            tracing::error!(%reason, "records appended after the last answer are not on disk");
        }
    }
    Ok(result?)
}

/// Accepted connections with TCP_NODELAY, as tonic's own `serve` sets and the
/// workers' channels set on their side: a response is several small writes (headers,
/// message, trailers), and with Nagle's algorithm the last ones wait for the peer's
/// delayed ACK, up to 40 ms (the ingestion benchmark's p99 was 44 ms for this alone).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn without_auth_only_loopback_may_be_served() {
        let open = Authenticator::insecure_no_auth();
        assert!(check_listen_address("127.0.0.1:1".parse().unwrap(), &open).is_ok());
        assert!(check_listen_address("[::1]:1".parse().unwrap(), &open).is_ok());
        for address in ["0.0.0.0:1", "10.1.2.3:1", "[::]:1"] {
            assert!(
                check_listen_address(address.parse().unwrap(), &open).is_err(),
                "{address}"
            );
        }
        let tokens = crate::service::auth::Tokens::ephemeral().unwrap();
        assert!(
            check_listen_address("0.0.0.0:1".parse().unwrap(), &Authenticator::new(&tokens))
                .is_ok()
        );
    }
}
