//! The worker's end of `WorkerService.Session`: Lease and Complete as ordinary async
//! calls, carried over one long-lived stream instead of a new HTTP/2 stream each.
//!
//! Calls made at the same moment (a completion and the lease for the slot it freed)
//! travel in one message, and their answers come back in one.
//!
//! The stream is opened on first use and again after it breaks. A call in flight when
//! it breaks fails UNAVAILABLE, which every caller already retries (both calls are
//! safe to repeat: a repeated completion gets the first one's answer, and a lease
//! whose answer was lost expires like any lease of a silent worker).

use crate::client::WorkerClient;
use expcluster_proto::v1::{self, session_call::Call, session_reply::Reply};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Calls the worker may have queued for sending on one stream.
const QUEUED_CALLS: usize = 256;
/// The most calls sent in one message.
const CALLS_PER_MESSAGE: usize = 64;
/// How long an answer may take beyond a lease's own wait: the coordinator answers
/// within a commit round, so this only catches one that is gone.
const ANSWER_PATIENCE: Duration = Duration::from_secs(60);

/// Where one caller's answer goes.
type Waiter = oneshot::Sender<Result<Reply, Status>>;

/// Who waits for which answer, and, once the stream broke, why.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    broken: Option<Status>,
}

type Waiters = Arc<Mutex<Pending>>;

/// An open stream: where calls go, and who waits for which answer.
struct Link {
    calls: mpsc::Sender<v1::SessionCall>,
    waiters: Waiters,
}

impl Link {
    /// Registers a caller's wait; hands the waiter back when the stream has broken
    /// (the caller opens another).
    fn expect(&self, call_id: u64, waiter: Waiter) -> Result<(), Waiter> {
        let mut pending = lock(&self.waiters);
        if pending.broken.is_some() {
            return Err(waiter);
        }
        pending.waiters.insert(call_id, waiter);
        Ok(())
    }
}

/// Lease and Complete over a session; cheap to clone (clones share the stream).
#[derive(Clone)]
pub struct Session {
    client: WorkerClient,
    link: Arc<tokio::sync::Mutex<Option<Link>>>,
    next_call: Arc<AtomicU64>,
    /// How long an answer may take beyond a lease's own wait.
    patience: Duration,
}

impl Session {
    /// A session over `client`'s channel; nothing is sent until the first call.
    pub fn new(client: WorkerClient) -> Self {
        Self {
            client,
            link: Arc::default(),
            next_call: Arc::new(AtomicU64::new(1)),
            patience: ANSWER_PATIENCE,
        }
    }

    /// Sets how long an answer may take beyond a lease's own wait (default 60 s).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    pub async fn lease(&self, request: v1::LeaseRequest) -> Result<v1::LeaseResponse, Status> {
        let patience = Duration::from_millis(u64::from(request.wait_ms)) + self.patience;
        match self.call(Call::Lease(request), patience).await? {
            Reply::Lease(response) => Ok(response),
            _ => Err(mismatched()),
        }
    }

    pub async fn complete(
        &self,
        request: v1::CompleteRequest,
    ) -> Result<v1::CompleteResponse, Status> {
        match self.call(Call::Complete(request), self.patience).await? {
            Reply::Complete(response) => Ok(response),
            _ => Err(mismatched()),
        }
    }

    /// Sends one call and waits for its answer, at most `patience`: a coordinator that
    /// vanished without closing the connection (a crashed node, a cut network) would
    /// otherwise leave the caller waiting forever. On a timeout the stream counts as
    /// broken, so the retry opens another.
    async fn call(&self, call: Call, patience: Duration) -> Result<Reply, Status> {
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        let (calls, waiters) = {
            let mut link = self.link.lock().await;
            let mut waiter = answer_tx;
            loop {
                if let Some(open) = link.as_ref() {
                    match open.expect(call_id, waiter) {
                        Ok(()) => break (open.calls.clone(), open.waiters.clone()),
                        Err(back) => waiter = back,
                    }
                }
                *link = Some(self.open().await?);
            }
        };
        let message = v1::SessionCall {
            call_id,
            call: Some(call),
        };
        if calls.send(message).await.is_err() {
            return Err(broken("the session closed before the call was sent"));
        }
        let Ok(answer) = tokio::time::timeout(patience, answer_rx).await else {
            let silent = broken(&format!(
                "no answer from the coordinator within {:.1} s",
                patience.as_secs_f64()
            ));
            // Other calls on this stream wait out their own patience; new calls open
            // another stream.
            let mut pending = lock(&waiters);
            pending.waiters.remove(&call_id);
            pending.broken.get_or_insert(silent.clone());
            return Err(silent);
        };
        match answer {
            Ok(Ok(Reply::Error(error))) => Err(Status::new(
                tonic::Code::from_i32(error.code),
                error.message,
            )),
            Ok(answer) => answer,
            Err(_) => Err(broken("the session closed before the answer came")),
        }
    }

    /// Opens a stream, and a task that hands each answer to its caller.
    async fn open(&self) -> Result<Link, Status> {
        let (calls_tx, calls_rx) = mpsc::channel(QUEUED_CALLS);
        let mut client = self.client.clone();
        // Each message carries every call queued by the time it is sent.
        let outgoing = futures::stream::unfold(calls_rx, |mut calls_rx| async move {
            let mut calls = vec![calls_rx.recv().await?];
            while calls.len() < CALLS_PER_MESSAGE {
                match calls_rx.try_recv() {
                    Ok(call) => calls.push(call),
                    Err(_) => break,
                }
            }
            Some((v1::SessionCalls { calls }, calls_rx))
        });
        let mut replies = client.session(outgoing).await?.into_inner();
        let waiters: Waiters = Arc::default();
        let link = Link {
            calls: calls_tx,
            waiters: waiters.clone(),
        };
        tokio::spawn(async move {
            let ended = loop {
                match replies.message().await {
                    Ok(Some(message)) => {
                        for reply in message.replies {
                            let waiter = lock(&waiters).waiters.remove(&reply.call_id);
                            if let (Some(waiter), Some(answer)) = (waiter, reply.reply) {
                                let _ = waiter.send(Ok(answer));
                            }
                        }
                    }
                    Ok(None) => break broken("the coordinator ended the session"),
                    Err(status) => break broken(&format!("the session broke: {status}")),
                }
            };
            // Under the lock: a caller either registered before (and is told now)
            // or sees the link broken and opens another.
            let mut pending = lock(&waiters);
            for (_, waiter) in pending.waiters.drain() {
                let _ = waiter.send(Err(ended.clone()));
            }
            pending.broken = Some(ended);
        });
        Ok(link)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn broken(why: &str) -> Status {
    Status::unavailable(format!("{why}; retrying"))
}

fn mismatched() -> Status {
    Status::internal("the coordinator answered a session call with the wrong kind of answer")
}
