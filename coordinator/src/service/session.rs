//! `WorkerService.Session`: a worker's Lease and Complete calls over one long-lived
//! bidirectional stream.
//!
//! A unary call costs the coordinator a new HTTP/2 stream, a header block to decode
//! (HPACK), a token check and a trailer block; for a no-op job those were most of its
//! CPU (docs/performance-history.md). On a session each call is one message. The rules stay those of
//! the unary calls: the same handlers ([`super::worker_service`]), the worker token
//! checked once when the stream opens (by the auth layer, as for any worker method),
//! and an answer only once every record written while the call ran is durable.
//!
//! Calls are handled in arrival order by one reader task. The worker sends the calls
//! it has queued at one moment as one message (say, a completion and the lease for
//! the slot it freed). Their answers other than leases go back as one message,
//! queued with one commit ticket, which a forwarder sends once the group commit
//! covers it. A lease with nothing to hand out waits in a task of its own (up to its
//! `wait_ms`), so a completion sent meanwhile is not held behind it.
//!
//! Lease answers go out at once, before the lease's journal record is durable: a
//! lease acknowledges nothing, so waiting for its fsync (a group-commit round, about
//! 1 ms on this disk) only delayed every job's start. What stays durable before it is
//! answered is everything a worker or a client is told was stored: every metric
//! point, file and completion of the leased attempt is acknowledged only once the
//! group commit covers it, and so covers the lease record written before it. A crash
//! can lose only a lease that nothing was acknowledged for; the restarted coordinator
//! then has the job queued, the worker's next heartbeat names an attempt it does not
//! know and is told to stop it, and the job is leased again (a lease handed to a
//! worker that already runs that attempt is carried on, not started twice: see the
//! worker's agent). `Settings::leases_wait_for_commit` restores the wait, to measure
//! against.

use super::worker_service::{complete_now, lease_waiting, try_lease};
use crate::service::commit_layer;
use crate::Coordinator;
use expcluster_core::{AttemptNumber, JobId};
use expcluster_proto::v1::{self, session_call::Call, session_reply::Reply};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// The answers a session streams back.
pub type Replies =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::SessionReplies, Status>> + Send>>;

/// Answer messages waiting for their commit: a worker has at most a few calls in
/// flight (one per slot, plus a lease), so this bound only stops a misbehaving one.
const QUEUED_ANSWERS: usize = 256;
/// Lease calls of one session that may wait for work at the same time; beyond that a
/// lease with nothing to hand out is answered empty at once.
const WAITING_LEASES: usize = 4;

/// Answers and the commit ticket they wait for.
type Answer = (Option<u64>, Vec<v1::SessionReply>);

/// Starts serving one session; returns the stream of its answers. The session ends
/// when the worker closes it, or when `closing` turns true (the server is shutting
/// down): calls already handled are still answered, once durable; the worker retries
/// the rest against the next coordinator.
pub fn serve(
    coordinator: Arc<Coordinator>,
    calls: tonic::Streaming<v1::SessionCalls>,
    closing: watch::Receiver<bool>,
) -> Replies {
    let (answers_tx, answers_rx) = mpsc::channel(QUEUED_ANSWERS);
    let (replies_tx, replies_rx) = mpsc::channel(QUEUED_ANSWERS);
    tokio::spawn(forward_when_durable(
        coordinator.clone(),
        answers_rx,
        replies_tx.clone(),
    ));
    let leases_wait_for_commit = coordinator.lock().settings.leases_wait_for_commit;
    let session = Session {
        coordinator,
        answers: answers_tx,
        replies: replies_tx,
        leases_wait_for_commit,
        waiting_leases: Arc::new(Semaphore::new(WAITING_LEASES)),
        closing,
    };
    tokio::spawn(session.read_calls(calls));
    Box::pin(ReceiverStream::new(replies_rx))
}

/// What the handling of one session's calls shares.
#[derive(Clone)]
struct Session {
    coordinator: Arc<Coordinator>,
    /// To the forwarder: answers with their commit tickets.
    answers: mpsc::Sender<Answer>,
    /// Straight to the worker: lease answers, which wait for no commit.
    replies: mpsc::Sender<Result<v1::SessionReplies, Status>>,
    leases_wait_for_commit: bool,
    waiting_leases: Arc<Semaphore>,
    closing: watch::Receiver<bool>,
}

impl Session {
    /// Handles each message of calls as it arrives, until the worker closes the
    /// stream, it breaks, or the server shuts down.
    async fn read_calls(self, mut calls: tonic::Streaming<v1::SessionCalls>) {
        loop {
            let message = tokio::select! {
                message = calls.message() => message,
                () = self.closed() => return,
            };
            let batch = match message {
                Ok(Some(batch)) => batch.calls,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%status, "a worker session ended");
                    return;
                }
            };
            // What the message's calls append (a completion's results line and
            // event, the next lease) goes to the disk in one group-commit round.
            let one_round = crate::store::group_commit::wake_later();
            let replies: Vec<v1::SessionReply> = batch
                .into_iter()
                .filter_map(|call| {
                    let reply = self.handle(call.call, call.call_id)?;
                    Some(v1::SessionReply {
                        call_id: call.call_id,
                        reply: Some(reply),
                    })
                })
                .collect();
            drop(one_round);
            let (leases, others): (Vec<_>, Vec<_>) = replies
                .into_iter()
                .partition(|reply| matches!(reply.reply, Some(Reply::Lease(_))));
            if !leases.is_empty() && !self.send_leases(leases).await {
                return;
            }
            if !others.is_empty() && !self.send(others).await {
                return;
            }
        }
    }

    /// One call's answer, or `None` for a lease left waiting (answered later).
    fn handle(&self, call: Option<Call>, call_id: u64) -> Option<Reply> {
        match call {
            Some(Call::Complete(request)) => Some(to_reply(
                complete_now(&self.coordinator, &request).map(Reply::Complete),
            )),
            Some(Call::Lease(request)) => self.lease(request, call_id),
            None => Some(Reply::Error(error(&Status::invalid_argument(
                "a session call names neither a lease nor a completion: use the same expcluster version on every node",
            )))),
        }
    }

    /// Leases now; with nothing to hand out and time to wait, hands the call to a
    /// task that answers it later (None).
    fn lease(&self, request: v1::LeaseRequest, call_id: u64) -> Option<Reply> {
        let jobs = match try_lease(&self.coordinator, &request) {
            Ok(jobs) => jobs,
            Err(status) => return Some(Reply::Error(error(&status))),
        };
        if !jobs.is_empty() || request.wait_ms == 0 {
            return Some(Reply::Lease(v1::LeaseResponse { jobs }));
        }
        let Ok(permit) = self.waiting_leases.clone().try_acquire_owned() else {
            return Some(Reply::Lease(v1::LeaseResponse { jobs }));
        };
        let session = self.clone();
        tokio::spawn(async move {
            let waited = tokio::select! {
                waited = lease_waiting(&session.coordinator, request) => waited,
                // The session is gone, or going: lease nothing it could not hear of.
                () = session.answers.closed() => return,
                () = session.closed() => return,
            };
            drop(permit);
            let reply = v1::SessionReply {
                call_id,
                reply: Some(to_reply(waited.map(Reply::Lease))),
            };
            session.send_leases(vec![reply]).await;
        });
        None
    }

    /// Resolves once the server is shutting down (at once if it already is).
    async fn closed(&self) {
        // An error means the server is gone: closing as well.
        let _ = self.closing.clone().wait_for(|closing| *closing).await;
    }

    /// Queues answers behind everything written so far; false once the session is
    /// gone.
    async fn send(&self, replies: Vec<v1::SessionReply>) -> bool {
        // Taken after the handlers ran: it covers every record the calls wrote.
        let ticket = commit_layer::ticket();
        self.answers.send((ticket, replies)).await.is_ok()
    }

    /// Sends lease answers at once (see the module's documentation), or behind the
    /// commit when `leases_wait_for_commit`; false once the session is gone. The jobs
    /// of an answer that cannot be sent go back to the queue.
    async fn send_leases(&self, replies: Vec<v1::SessionReply>) -> bool {
        if self.leases_wait_for_commit {
            return self.send(replies).await;
        }
        match self.replies.send(Ok(v1::SessionReplies { replies })).await {
            Ok(()) => true,
            Err(unsent) => {
                if let Ok(unsent) = unsent.0 {
                    return_leases(&self.coordinator, &unsent.replies);
                }
                false
            }
        }
    }
}

fn to_reply(result: Result<Reply, Status>) -> Reply {
    result.unwrap_or_else(|status| Reply::Error(error(&status)))
}

fn error(status: &Status) -> v1::SessionError {
    v1::SessionError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

/// Sends each answer once its records are durable, in the order they were queued;
/// answers whose records cannot be made durable become UNAVAILABLE, as a unary call's.
/// The jobs of a lease answer that is not sent go back to the queue at once.
async fn forward_when_durable(
    coordinator: Arc<Coordinator>,
    mut answers: mpsc::Receiver<Answer>,
    replies: mpsc::Sender<Result<v1::SessionReplies, Status>>,
) {
    loop {
        let (ticket, mut answer) = tokio::select! {
            next = answers.recv() => match next {
                Some(next) => next,
                None => return,
            },
            // The worker went away: dropping `answers` stops waiting leases too.
            () = replies.closed() => return,
        };
        if let Err(status) = commit_layer::durable(ticket).await {
            return_leases(&coordinator, &answer);
            let unavailable = error(&status);
            for reply in &mut answer {
                reply.reply = Some(Reply::Error(unavailable.clone()));
            }
        }
        if let Err(unsent) = replies
            .send(Ok(v1::SessionReplies { replies: answer }))
            .await
        {
            if let Ok(unsent) = unsent.0 {
                return_leases(&coordinator, &unsent.replies);
            }
            return;
        }
    }
}

/// The (job, attempt) of every lease in `answer`.
fn leases_of(answer: &[v1::SessionReply]) -> Vec<(JobId, AttemptNumber)> {
    answer
        .iter()
        .filter_map(|reply| match &reply.reply {
            Some(Reply::Lease(lease)) => Some(&lease.jobs),
            _ => None,
        })
        .flatten()
        .filter_map(|spec| Some((JobId::parse(&spec.job_id).ok()?, spec.attempt)))
        .collect()
}

/// Requeues the jobs of lease answers that are not sent.
fn return_leases(coordinator: &Coordinator, answer: &[v1::SessionReply]) {
    let leases = leases_of(answer);
    if leases.is_empty() {
        return;
    }
    let mut state = coordinator.lock();
    if let Err(err) = state.return_undelivered(&leases) {
        tracing::error!(%err, "cannot requeue the jobs of an unsent lease answer; their leases will run out");
    }
    state.hand_to_waiting(std::time::Instant::now());
}
