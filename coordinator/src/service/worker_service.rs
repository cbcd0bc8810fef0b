//! `WorkerService`: what workers call.

use super::{convert, session};
use crate::state::gang::RendezvousAnswer;
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
            self.coordinator.jobs_queued.notify_waiters();
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
    let (parts, workspace_dir, ranks_placed_elsewhere) = {
        let mut state = coordinator.lock();
        let leases = state.lease(&worker, request.free_slots as usize, Instant::now())?;
        let parts = leases
            .iter()
            .filter_map(|lease| {
                state
                    .jobs
                    .get(&lease.job)
                    .map(|job| convert::spec_parts(&state, job, lease.rank))
            })
            .collect::<Vec<_>>();
        let workspace_dir = if parts.is_empty() {
            String::new()
        } else {
            state.workspace.root().display().to_string()
        };
        (parts, workspace_dir, state.has_pending_ranks())
    };
    let jobs = parts
        .into_iter()
        .map(|parts| convert::job_spec(parts, &workspace_dir))
        .collect();
    if ranks_placed_elsewhere {
        // Other workers' waiting lease calls pick up their ranks now.
        coordinator.jobs_queued.notify_waiters();
    }
    Ok(jobs)
}

/// Leases jobs, waiting up to the request's `wait_ms` (at most [`MAX_LEASE_WAIT`])
/// for one to be queued.
pub(super) async fn lease_waiting(
    coordinator: &Coordinator,
    request: v1::LeaseRequest,
) -> Result<v1::LeaseResponse, Status> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::from(request.wait_ms)).min(MAX_LEASE_WAIT);
    loop {
        let notified = coordinator.jobs_queued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let jobs = try_lease(coordinator, &request)?;
        if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(v1::LeaseResponse { jobs });
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(LEASE_RECHECK) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
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
        coordinator.jobs_queued.notify_waiters();
    }
    Ok(v1::CompleteResponse { requeued })
}
