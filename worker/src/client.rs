//! The worker's and CLI's gRPC channel: every call carries the protocol version and,
//! when one is configured, the caller's token; the channel speaks TLS (with a client
//! certificate for mutual TLS) when a CA is given.
//!
//! The token is read once, from a file or the environment, and kept only in memory;
//! it goes into the `authorization` header, never onto a command line.

use expcluster_proto::v1::client_service_client::ClientServiceClient;
use expcluster_proto::v1::worker_service_client::WorkerServiceClient;
use expcluster_proto::{MAX_MESSAGE_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// The environment variable holding a token itself.
pub const TOKEN_ENV: &str = "EXPCLUSTER_TOKEN";
/// The environment variable naming a token file.
pub const TOKEN_FILE_ENV: &str = "EXPCLUSTER_TOKEN_FILE";

/// Adds the protocol-version header, and the token if any, to every call.
#[derive(Debug, Clone, Default)]
pub struct ProtocolHeader {
    authorization: Option<AsciiMetadataValue>,
}

impl ProtocolHeader {
    pub fn new(security: &ClientSecurity) -> Self {
        Self {
            authorization: security.authorization.clone(),
        }
    }
}

impl tonic::service::Interceptor for ProtocolHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(PROTOCOL_HEADER, MetadataValue::from(PROTOCOL_VERSION));
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// TLS settings of a worker or client (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA that signed the coordinator's certificate.
    pub ca: PathBuf,
    /// This node's certificate and key, for a coordinator that demands mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name in the coordinator's certificate, when it differs from the address's host.
    pub domain: Option<String>,
}

/// How a worker or client proves who it is: a token and, optionally, TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    authorization: Option<AsciiMetadataValue>,
    tls: Option<ClientTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read the token file {path}: {reason}; copy the coordinator's .expcluster/<role>.token to this node, or set EXPCLUSTER_TOKEN")]
    TokenFile { path: PathBuf, reason: String },
    #[error("the token {0} is not usable: a token is printable ASCII with no spaces")]
    BadToken(&'static str),
    #[error("cannot read the TLS {what} {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("mutual TLS needs both --tls-cert and --tls-key")]
    HalfIdentity,
}

impl ClientSecurity {
    /// No token, no TLS (a coordinator started with `--insecure-no-auth`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the token (already read).
    pub fn with_token(mut self, token: &str) -> Result<Self, SecurityError> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecurityError::BadToken("given"));
        }
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| SecurityError::BadToken("given"))?;
        self.authorization = Some(value);
        Ok(self)
    }

    /// Reads the token from `file`, else `$EXPCLUSTER_TOKEN`, else the file named by
    /// `$EXPCLUSTER_TOKEN_FILE`; none of them: no token (the coordinator will say
    /// what it needs).
    pub fn with_token_from(self, file: Option<&Path>) -> Result<Self, SecurityError> {
        if let Some(file) = file {
            return self.with_token(&read_token(file)?);
        }
        if let Some(token) = std::env::var_os(TOKEN_ENV) {
            let token = token
                .into_string()
                .map_err(|_| SecurityError::BadToken("in EXPCLUSTER_TOKEN"))?;
            return self.with_token(&token);
        }
        if let Some(file) = std::env::var_os(TOKEN_FILE_ENV) {
            return self.with_token(&read_token(Path::new(&file))?);
        }
        Ok(self)
    }

    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    /// Turns on TLS; every file is read now, so a typo fails at start-up.
    pub fn with_tls(mut self, files: &ClientTlsFiles) -> Result<Self, SecurityError> {
        let ca = read_pem("CA certificate", &files.ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read_pem("certificate", cert)?,
                    read_pem("key", key)?,
                ));
            }
            (None, None) => {}
            _ => return Err(SecurityError::HalfIdentity),
        }
        if let Some(domain) = &files.domain {
            config = config.domain_name(domain.clone());
        }
        self.tls = Some(config);
        Ok(self)
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }
}

fn read_token(path: &Path) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|err| SecurityError::TokenFile {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|err| SecurityError::TlsFile {
        what,
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, ProtocolHeader>>;
pub type ClientClient = ClientServiceClient<InterceptedService<Channel, ProtocolHeader>>;

/// Normalises `host:port` to `http://host:port` (`https://` with TLS).
pub fn endpoint_url(address: &str, tls: bool) -> String {
    if address.contains("://") {
        address.to_owned()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// Connects lazily: the first call connects, and a broken connection is re-made by
/// the channel, so callers only see per-call errors. HTTP/2 pings every 30 s find a
/// connection whose peer vanished without closing it (a crashed node): a worker's
/// session stream would otherwise wait on it for good.
pub fn channel(
    address: &str,
    security: &ClientSecurity,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(endpoint_url(address, security.tls.is_some()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(tls) = &security.tls {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    Ok(endpoint.connect_lazy())
}

pub fn worker_client(channel: Channel, security: &ClientSecurity) -> WorkerClient {
    WorkerServiceClient::with_interceptor(channel, ProtocolHeader::new(security))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub fn client_client(channel: Channel, security: &ClientSecurity) -> ClientClient {
    ClientServiceClient::with_interceptor(channel, ProtocolHeader::new(security))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Whether a failed call may succeed if retried (the coordinator is restarting,
/// overloaded, or its disk is full). CANCELLED is how the client reports a call that
/// a dying connection dropped before it was sent or answered (hyper's "operation was
/// canceled", seen when the coordinator was killed mid-call); the coordinator never
/// answers it itself.
pub fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::ResourceExhausted
            | tonic::Code::Cancelled
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn a_call_dropped_with_its_connection_is_retried_and_a_refusal_is_not() {
        assert!(is_retryable(&Status::cancelled("operation was canceled")));
        assert!(is_retryable(&Status::unavailable(
            "cannot write the workspace"
        )));
        assert!(!is_retryable(&Status::failed_precondition(
            "job x attempt 1 is not current (superseded or finished): stop it"
        )));
        assert!(!is_retryable(&Status::permission_denied("not your job")));
    }

    #[test]
    fn the_token_goes_into_the_authorization_header_of_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.token");
        std::fs::write(&file, "ecc_abc\n").unwrap();
        let security = ClientSecurity::none().with_token_from(Some(&file)).unwrap();
        let request = ProtocolHeader::new(&security)
            .call(Request::new(()))
            .unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer ecc_abc"
        );
        assert!(request.metadata().get(PROTOCOL_HEADER).is_some());
        let request = ProtocolHeader::default().call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn unreadable_token_files_and_bad_tokens_are_errors() {
        let err = ClientSecurity::none()
            .with_token_from(Some(Path::new("/nonexistent/t")))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/t"), "{err}");
        assert!(ClientSecurity::none().with_token("a b").is_err());
        assert!(ClientSecurity::none().with_token("\n").is_err());
        let half = ClientTlsFiles {
            ca: PathBuf::from("/dev/null"),
            cert: Some(PathBuf::from("/dev/null")),
            key: None,
            domain: None,
        };
        assert!(matches!(
            ClientSecurity::none().with_tls(&half),
            Err(SecurityError::HalfIdentity)
        ));
    }
}
