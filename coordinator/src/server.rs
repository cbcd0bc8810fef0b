//! Serving the coordinator over gRPC on an already-bound listener.

use crate::service::{ClientApi, WorkerApi};
use crate::Coordinator;
use expcluster_proto::v1::client_service_server::ClientServiceServer;
use expcluster_proto::v1::worker_service_server::WorkerServiceServer;
use expcluster_proto::{MAX_MESSAGE_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
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

/// Serves until `shutdown` resolves. The listener is bound by the caller (tests bind
/// `127.0.0.1:0` and read the port before starting).
pub async fn serve(
    listener: TcpListener,
    coordinator: Arc<Coordinator>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let reaper = tokio::spawn(coordinator.clone().run_lease_reaper(Duration::from_millis(250)));
    let workers = WorkerServiceServer::new(WorkerApi {
        coordinator: coordinator.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let clients = ClientServiceServer::new(ClientApi { coordinator }).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let result = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(workers, check_protocol))
        .add_service(InterceptedService::new(clients, check_protocol))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    reaper.abort();
    result
}
