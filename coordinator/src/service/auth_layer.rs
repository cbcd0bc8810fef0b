//! The one path every RPC goes through: a tower layer in front of both services that
//! checks the caller's token against the role the method path needs, before the
//! request body is read (so an unauthenticated caller cannot make the coordinator
//! buffer anything), and maps an oversized message to RESOURCE_EXHAUSTED.
//!
//! A tower layer rather than a tonic interceptor because interceptors do not see the
//! method path, and the role depends on it.

use crate::service::auth::{Authenticator, Refusal, AUTH_HEADER};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let header = request
            .headers()
            .get(AUTH_HEADER)
            .map(http::HeaderValue::as_bytes);
        let verdict = self.auth.check(request.uri().path(), header);
        if let Err(refusal) = verdict {
            let status = match refusal {
                Refusal::Unauthenticated(message) => Status::unauthenticated(message),
                Refusal::WrongRole(message) => Status::permission_denied(message),
            };
            tracing::warn!(path = request.uri().path(), code = ?status.code(), "refused a call");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        // The clone-and-swap dance: `inner` was made ready by poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            oversized_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// tonic answers a message above the size limit with OUT_OF_RANGE; gRPC's convention
/// (grpc-go, grpc-java) and the workers' retry logic expect RESOURCE_EXHAUSTED.
fn oversized_is_resource_exhausted<B>(response: &mut http::Response<B>) {
    let headers = response.headers_mut();
    let is_out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    // grpc-message is percent-encoded on the wire.
    let is_too_large = headers.get("grpc-message").is_some_and(|v| {
        let message = String::from_utf8_lossy(v.as_bytes()).replace("%20", " ");
        message.contains("message length too large")
    });
    if is_out_of_range && is_too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_limit_error_becomes_resource_exhausted() {
        let too_large = Status::out_of_range("Error, decoded message length too large: found 67108869 bytes, the limit is: 16777216 bytes");
        let mut response: http::Response<tonic::body::Body> = too_large.into_http();
        oversized_is_resource_exhausted(&mut response);
        assert_eq!(response.headers()["grpc-status"], "8");
        let other = Status::out_of_range("step out of range");
        let mut response: http::Response<tonic::body::Body> = other.into_http();
        oversized_is_resource_exhausted(&mut response);
        assert_eq!(response.headers()["grpc-status"], "11");
    }
}
