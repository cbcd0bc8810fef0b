//! The worker's and CLI's gRPC channel: every call carries the protocol version.

use expcluster_proto::v1::client_service_client::ClientServiceClient;
use expcluster_proto::v1::worker_service_client::WorkerServiceClient;
use expcluster_proto::{MAX_MESSAGE_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds the protocol-version header to every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtocolHeader;

impl tonic::service::Interceptor for ProtocolHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(PROTOCOL_HEADER, MetadataValue::from(PROTOCOL_VERSION));
        Ok(request)
    }
}

pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, ProtocolHeader>>;
pub type ClientClient = ClientServiceClient<InterceptedService<Channel, ProtocolHeader>>;

/// Normalises `host:port` to `http://host:port`.
pub fn endpoint_url(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Connects lazily: the first call connects, and a broken connection is re-made by
/// the channel, so callers only see per-call errors.
pub fn channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(endpoint_url(address))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

pub fn worker_client(channel: Channel) -> WorkerClient {
    WorkerServiceClient::with_interceptor(channel, ProtocolHeader)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub fn client_client(channel: Channel) -> ClientClient {
    ClientServiceClient::with_interceptor(channel, ProtocolHeader)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Whether a failed call may succeed if retried (the coordinator is restarting,
/// overloaded, or its disk is full).
pub fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted
    )
}
