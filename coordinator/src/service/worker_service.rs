//! `WorkerService`: what workers call.

use super::{convert, session};
use crate::ops::lease_waiters::Handed;
use crate::ops::CoordinatorState;
use crate::state::gang::RendezvousAnswer;
use crate::state::reports::Lease;
use crate::store::metric_batch::PreparedPoints;
use crate::Coordinator;
use expcluster_proto::v1::{self, worker_service_server::WorkerService};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// The longest a lease call waits for work before answering empty.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(20);
/// Re-check period while waiting (jobs in retry backoff become ready without a signal).
const LEASE_RECHECK: Duration = Duration::from_millis(200);
/// The longest a rendezvous call waits for rank 0's id before answering not ready.
const MAX_RENDEZVOUS_WAIT: Duration = Duration::from_secs(20);
/// Polling period while a rank waits for rank 0 (once per gang attempt, so polling
/// costs nothing worth a dedicated signal).
const RENDEZVOUS_RECHECK: Duration = Duration::from_millis(50);

pub struct WorkerApi {
    pub coordinator: Arc<Coordinator>,
    /// Turns true when the server starts shutting down (ends worker sessions).
    pub closing: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let request = request.into_inner();
        let restart = convert::restarted_worker(&request)?;
        let mut state = self.coordinator.lock();
        let registration = state.register(
            &request.hostname,
            request.slots,
            restart.as_ref(),
            Instant::now(),
        )?;
        if let Some(record) = state.workers.get_mut(&registration.worker) {
            record.gpus = request.gpus;
        }
        let response = v1::RegisterResponse {
            worker_id: registration.worker.0,
            heartbeat_interval_ms: state.settings.heartbeat_interval.as_millis() as u32,
            lease_timeout_ms: state.settings.lease_timeout.as_millis() as u32,
            reattached: convert::attempt_refs(registration.reattached),
        };
        drop(state);
        if registration.requeued > 0 {
            self.coordinator.hand_out_queued();
        }
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let worker = convert::worker_id(&request.worker_id)?;
        let running = request
            .running
            .iter()
            .map(|r| Ok((convert::job_id(&r.job_id)?, r.attempt)))
            .collect::<Result<Vec<_>, Status>>()?;
        let result = self
            .coordinator
            .lock()
            .heartbeat(&worker, &running, Instant::now());
        match result {
            Ok(stop) => Ok(Response::new(v1::HeartbeatResponse {
                stop: stop
                    .into_iter()
                    .map(|(job, attempt)| v1::AttemptRef {
                        job_id: job.to_string(),
                        attempt,
                    })
                    .collect(),
                known: true,
            })),
            Err(crate::error::CoordinatorError::UnknownWorker(_)) => {
                Ok(Response::new(v1::HeartbeatResponse {
                    stop: Vec::new(),
                    known: false,
                }))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn lease(
        &self,
        request: Request<v1::LeaseRequest>,
    ) -> Result<Response<v1::LeaseResponse>, Status> {
        lease_waiting(&self.coordinator, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn report_metrics(
        &self,
        request: Request<v1::MetricBatch>,
    ) -> Result<Response<v1::MetricAck>, Status> {
        let batch = request.into_inner();
        let worker = convert::worker_id(&batch.worker_id)?;
        let job = convert::job_id(&batch.job_id)?;
        // Checked and formatted before the state lock (metric_batch.rs).
        let points = PreparedPoints::new(convert::metric_points(batch.points))?;
        let acked_through =
            self.coordinator
                .lock()
                .report_prepared(&worker, &job, batch.attempt, &points)?;
        Ok(Response::new(v1::MetricAck { acked_through }))
    }

    async fn upload_artifact(
        &self,
        request: Request<v1::ArtifactUpload>,
    ) -> Result<Response<v1::ArtifactAck>, Status> {
        let upload = request.into_inner();
        let worker = convert::worker_id(&upload.worker_id)?;
        let job = convert::job_id(&upload.job_id)?;
        let is_log = upload.kind == v1::ArtifactKind::Log as i32;
        let stored_as = self.coordinator.lock().upload_artifact(
            &worker,
            &job,
            upload.attempt,
            &upload.name,
            &upload.content,
            is_log,
        )?;
        if is_log {
            let state = self.coordinator.lock();
            state.drop_partial_log(&job, upload.attempt, &upload.name);
        }
        Ok(Response::new(v1::ArtifactAck { stored_as }))
    }

    async fn append_log(
        &self,
        request: Request<v1::LogChunk>,
    ) -> Result<Response<v1::LogAck>, Status> {
        let chunk = request.into_inner();
        let worker = convert::worker_id(&chunk.worker_id)?;
        let job = convert::job_id(&chunk.job_id)?;
        let appended = self.coordinator.lock().append_log(
            &worker,
            &job,
            chunk.attempt,
            &chunk.stream,
            chunk.offset,
            &chunk.content,
        )?;
        Ok(Response::new(v1::LogAck {
            stored: appended.stored,
            full: appended.full,
        }))
    }

    async fn complete(
        &self,
        request: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::CompleteResponse>, Status> {
        complete_now(&self.coordinator, &request.into_inner()).map(Response::new)
    }

    async fn rendezvous(
        &self,
        request: Request<v1::RendezvousRequest>,
    ) -> Result<Response<v1::RendezvousResponse>, Status> {
        let request = request.into_inner();
        let worker = convert::worker_id(&request.worker_id)?;
        let job = convert::job_id(&request.job_id)?;
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(request.wait_ms)).min(MAX_RENDEZVOUS_WAIT);
        loop {
            let answer = self.coordinator.lock().rendezvous(
                &worker,
                &job,
                request.attempt,
                request.rank,
                &request.publish,
            )?;
            match answer {
                RendezvousAnswer::Ready(id) => {
                    return Ok(Response::new(v1::RendezvousResponse { ready: true, id }))
                }
                RendezvousAnswer::NotYet if tokio::time::Instant::now() >= deadline => {
                    return Ok(Response::new(v1::RendezvousResponse {
                        ready: false,
                        id: Vec::new(),
                    }))
                }
                RendezvousAnswer::NotYet => tokio::time::sleep(RENDEZVOUS_RECHECK).await,
            }
        }
    }

    type SessionStream = session::Replies;

    async fn session(
        &self,
        request: Request<tonic::Streaming<v1::SessionCalls>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Ok(Response::new(session::serve(
            self.coordinator.clone(),
            request.into_inner(),
            self.closing.clone(),
        )))
    }
}

/// Leases up to `free_slots` jobs now, without waiting; empty when none is ready.
pub(super) fn try_lease(
    coordinator: &Coordinator,
    request: &v1::LeaseRequest,
) -> Result<Vec<v1::JobSpec>, Status> {
    let worker = convert::worker_id(&request.worker_id)?;
    // A lease taken now could not be answered, and would be handed back: taking and
    // returning jobs on every retry would only pile up records waiting for the disk.
    crate::service::commit_layer::refuse_while_writes_fail()?;
    let (parts, workspace_dir) = {
        let mut state = coordinator.lock();
        let now = Instant::now();
        let leases = state.lease(&worker, request.free_slots as usize, now)?;
        let parts = lease_parts(&state, &leases);
        if places_gang_ranks(&state, &leases) {
            // Other workers' waiting lease calls get their ranks now.
            state.hand_to_waiting(now);
        }
        parts
    };
    Ok(job_specs(parts, &workspace_dir))
}

/// Whether `leases` hold a gang's ranks (whose other ranks may wait for other
/// workers).
fn places_gang_ranks(state: &CoordinatorState, leases: &[Lease]) -> bool {
    leases
        .iter()
        .any(|lease| state.jobs.get(&lease.job).is_some_and(|job| job.ranks > 1))
}

/// What the specs of `leases` are built from, taken under the lock, and the
/// workspace's directory.
fn lease_parts(state: &CoordinatorState, leases: &[Lease]) -> (Vec<convert::SpecParts>, String) {
    let parts = leases
        .iter()
        .filter_map(|lease| {
            state
                .jobs
                .get(&lease.job)
                .map(|job| convert::spec_parts(state, job, lease.rank))
        })
        .collect::<Vec<_>>();
    let workspace_dir = if parts.is_empty() {
        String::new()
    } else {
        state.workspace.root().display().to_string()
    };
    (parts, workspace_dir)
}

/// The specs, built after the lock.
fn job_specs(parts: Vec<convert::SpecParts>, workspace_dir: &str) -> Vec<v1::JobSpec> {
    parts
        .into_iter()
        .map(|parts| convert::job_spec(parts, workspace_dir))
        .collect()
}

/// Leases jobs, waiting up to the request's `wait_ms` (at most [`MAX_LEASE_WAIT`])
/// in the line of waiting lease calls ([`crate::ops::lease_waiters`]) for jobs to be
/// handed to it.
pub(super) async fn lease_waiting(
    coordinator: &Coordinator,
    request: v1::LeaseRequest,
) -> Result<v1::LeaseResponse, Status> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::from(request.wait_ms)).min(MAX_LEASE_WAIT);
    let worker = convert::worker_id(&request.worker_id)?;
    let free_slots = request.free_slots as usize;
    let mut waiting = WaitingLease {
        coordinator,
        worker,
        free_slots,
        id: None,
        handed: None,
        received: Vec::new(),
    };
    loop {
        crate::service::commit_layer::refuse_while_writes_fail()?;
        let answer = {
            let mut state = coordinator.lock();
            let now = Instant::now();
            let mut leases = waiting.take_handed(&mut state);
            if leases.is_empty() {
                leases = state.lease(&waiting.worker, free_slots, now)?;
            }
            if leases.is_empty() && tokio::time::Instant::now() < deadline {
                // In line under the same lock that found nothing: a job queued from
                // now on is handed to it (or to a call ahead of it).
                waiting.join(&mut state);
                None
            } else {
                waiting.leave(&mut state);
                if places_gang_ranks(&state, &leases) {
                    state.hand_to_waiting(now);
                }
                Some(lease_parts(&state, &leases))
            }
        };
        if let Some((parts, workspace_dir)) = answer {
            return Ok(v1::LeaseResponse {
                jobs: job_specs(parts, &workspace_dir),
            });
        }
        let Some(handed) = waiting.handed.as_mut() else {
            // `join` just put it in line: not reached.
            return Ok(v1::LeaseResponse { jobs: Vec::new() });
        };
        // Jobs in retry backoff become ready without anything handing them out: the
        // re-check catches them.
        tokio::select! {
            handed = handed => waiting.received(handed),
            () = tokio::time::sleep(LEASE_RECHECK) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A lease call's place in the line of waiting calls. Dropped while in line (its
/// session went away), it leaves the line, and leases handed to it meanwhile go
/// back to the queue.
struct WaitingLease<'a> {
    coordinator: &'a Coordinator,
    worker: expcluster_core::WorkerId,
    free_slots: usize,
    /// Its id in the line, while in it.
    id: Option<u64>,
    handed: Option<Handed>,
    /// Leases handed to it and received, not yet answered.
    received: Vec<Lease>,
}

impl WaitingLease<'_> {
    /// Joins the line, unless already in it.
    fn join(&mut self, state: &mut CoordinatorState) {
        if self.id.is_none() {
            let (id, handed) = state.wait_for_lease(&self.worker, self.free_slots);
            self.id = Some(id);
            self.handed = Some(handed);
        }
    }

    /// Leaves the line.
    fn leave(&mut self, state: &mut CoordinatorState) {
        if let Some(id) = self.id.take() {
            state.stop_waiting(id);
        }
        self.handed = None;
    }

    /// What its channel yielded while it waited: leases (it is out of the line), or
    /// nothing (it is out of the line too: it joins again).
    fn received(&mut self, handed: Result<Vec<Lease>, tokio::sync::oneshot::error::RecvError>) {
        self.id = None;
        self.handed = None;
        if let Ok(leases) = handed {
            self.received = leases;
        }
    }

    /// The leases handed to it, if any (it is then out of the line); under the lock
    /// that hands them out, so none can arrive after this looked.
    fn take_handed(&mut self, state: &mut CoordinatorState) -> Vec<Lease> {
        if !self.received.is_empty() {
            return std::mem::take(&mut self.received);
        }
        let Some(handed) = self.handed.as_mut() else {
            return Vec::new();
        };
        match handed.try_recv() {
            Ok(leases) => {
                self.id = None;
                self.handed = None;
                leases
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => Vec::new(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                // Out of the line without leases: join again.
                self.leave(state);
                Vec::new()
            }
        }
    }
}

impl Drop for WaitingLease<'_> {
    fn drop(&mut self) {
        if self.id.is_none() && self.received.is_empty() {
            return;
        }
        let mut state = self.coordinator.lock();
        let unsent = self.take_handed(&mut state);
        self.leave(&mut state);
        if unsent.is_empty() {
            return;
        }
        let unsent: Vec<_> = unsent.into_iter().map(|l| (l.job, l.attempt)).collect();
        if let Err(err) = state.return_undelivered(&unsent) {
            tracing::error!(%err, "cannot requeue the jobs of a lease nobody waits for; their leases will run out");
        }
        state.hand_to_waiting(Instant::now());
    }
}

/// Records the end of an attempt.
pub(super) fn complete_now(
    coordinator: &Coordinator,
    request: &v1::CompleteRequest,
) -> Result<v1::CompleteResponse, Status> {
    let worker = convert::worker_id(&request.worker_id)?;
    let job = convert::job_id(&request.job_id)?;
    let completion = convert::completion(request)?;
    let requeued =
        coordinator
            .lock()
            .complete(&worker, &job, request.attempt, completion, Instant::now())?;
    if requeued {
        coordinator.hand_out_queued();
    }
    Ok(v1::CompleteResponse { requeued })
}
