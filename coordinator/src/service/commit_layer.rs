//! Answering an RPC only once what it wrote is durable.
//!
//! With [`crate::store::group_commit`], a handler's appends are written but not yet synced
//! when it returns. This layer sits in front of every service and holds each response
//! until the committer reports every record written by then as durable. Waiting here,
//! after the handler has released the state mutex, is what lets one fsync serve many
//! callers; doing it for every method (reads included) means no method can
//! acknowledge, or show, a change that a crash could still take back, and a method
//! added later is covered without remembering to wait.

use crate::store::group_commit;
use futures::future::BoxFuture;
use std::future::Future;
use tonic::Status;

type Response = http::Response<tonic::body::Body>;
type Answer<E> = BoxFuture<'static, Result<Response, E>>;

/// The layer: `Server::builder().layer(commit_layer::layer())`.
pub fn layer<F, E>() -> tower::util::MapFutureLayer<fn(F) -> Answer<E>>
where
    F: Future<Output = Result<Response, E>> + Send + 'static,
{
    tower::util::MapFutureLayer::new(answer_when_durable::<F, E>)
}

/// Runs the handler, then waits for the fsync covering what it wrote.
fn answer_when_durable<F, E>(handler: F) -> Answer<E>
where
    F: Future<Output = Result<Response, E>> + Send + 'static,
{
    Box::pin(async move {
        let response = handler.await?;
        // Taken after the handler returned: it covers every record it wrote.
        match durable(ticket()).await {
            Ok(()) => Ok(response),
            Err(status) => Ok(status.into_http()),
        }
    })
}

pub use crate::store::group_commit::ticket;

/// UNAVAILABLE while the group commit cannot write (a full disk): for a call that
/// would only add records no answer could acknowledge, such as a lease.
pub fn refuse_while_writes_fail() -> Result<(), Status> {
    if !group_commit::deferring() {
        return Ok(());
    }
    match group_commit::global().writes_failing() {
        Some(reason) => Err(unwritable(&reason)),
        None => Ok(()),
    }
}

/// Waits until every record counted by `ticket` is durable; UNAVAILABLE (the worker
/// or CLI retries) when it cannot be.
pub async fn durable(ticket: Option<u64>) -> Result<(), Status> {
    let Some(ticket) = ticket else {
        return Ok(());
    };
    group_commit::global().wait(ticket).await.map_err(|reason| {
        tracing::error!(%reason, "answering unavailable: a write could not be made durable");
        unwritable(&reason)
    })
}

fn unwritable(reason: &str) -> Status {
    Status::unavailable(format!(
        "{} durably ({reason}); retry later",
        crate::error::CANNOT_WRITE_WORKSPACE
    ))
}
