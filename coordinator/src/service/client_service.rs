//! `ClientService`: what the CLI calls.

use super::convert;
use crate::stage::idea_update::ResearcherUpdate;
use crate::Coordinator;
use expcluster_proto::v1::{self, client_service_server::ClientService};
use expcluster_proto::PROTOCOL_VERSION;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct ClientApi {
    pub coordinator: Arc<Coordinator>,
}

#[tonic::async_trait]
impl ClientService for ClientApi {
    async fn health(
        &self,
        _request: Request<v1::HealthRequest>,
    ) -> Result<Response<v1::HealthResponse>, Status> {
        let state = self.coordinator.lock();
        Ok(Response::new(v1::HealthResponse {
            protocol_version: PROTOCOL_VERSION,
            workspace: state.workspace.root().display().to_string(),
            idea: state.workspace.idea_name(),
        }))
    }

    async fn submit_stage(
        &self,
        request: Request<v1::SubmitStageRequest>,
    ) -> Result<Response<v1::SubmitStageResponse>, Status> {
        let request = request.into_inner();
        let stage = convert::stage(&request.stage)?;
        let submitted = if request.seeds_for_power {
            if request.rerun {
                return Err(Status::invalid_argument(
                    "--seeds-for-power adds seeds to the results the first look judged: it cannot rerun them (drop --rerun)",
                ));
            }
            let submitted = self.coordinator.lock().submit_second_look(stage)?;
            self.coordinator.hand_out_queued();
            submitted
        } else {
            self.coordinator.submit_stage(stage, request.rerun)?
        };
        Ok(Response::new(v1::SubmitStageResponse {
            stage_run_id: submitted.stage_run.to_string(),
            jobs_total: submitted.jobs_total as u32,
            jobs_reused: submitted.jobs_reused as u32,
            attached: submitted.attached,
            note: submitted.note,
        }))
    }

    async fn stage_status(
        &self,
        request: Request<v1::StageStatusRequest>,
    ) -> Result<Response<v1::StageStatusResponse>, Status> {
        let stage = convert::stage(&request.into_inner().stage)?;
        let state = self.coordinator.lock();
        let run = state.latest_run(stage).ok_or_else(|| {
            Status::not_found(format!(
                "stage {stage} was never submitted: run `expcluster submit --stage {stage}`"
            ))
        })?;
        let now = std::time::Instant::now();
        let jobs = run
            .jobs
            .iter()
            .filter_map(|id| state.jobs.get(id))
            .map(|job| {
                let mut status = convert::job_status(job);
                if let Some(reason) = state.gang_wait_reason(job, now) {
                    status.error = reason;
                }
                status
            })
            .collect();
        Ok(Response::new(v1::StageStatusResponse {
            stage: stage.to_string(),
            finished: run.finished,
            jobs,
            idea_version: run.idea_version,
            outputs: run.outputs.clone(),
            primary_metric: run.primary_metric.clone(),
        }))
    }

    async fn cancel(
        &self,
        request: Request<v1::CancelRequest>,
    ) -> Result<Response<v1::CancelResponse>, Status> {
        let request = request.into_inner();
        let stage = (!request.stage.is_empty())
            .then(|| convert::stage(&request.stage))
            .transpose()?;
        let job = (!request.job_id.is_empty())
            .then(|| convert::job_id(&request.job_id))
            .transpose()?;
        let cancelled = self.coordinator.lock().cancel(stage, job.as_ref())?;
        Ok(Response::new(v1::CancelResponse {
            cancelled: cancelled as u32,
        }))
    }

    async fn list_workers(
        &self,
        _request: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        let state = self.coordinator.lock();
        let now = Instant::now();
        let mut workers: Vec<v1::WorkerInfo> = state
            .workers
            .iter()
            .map(|(id, record)| v1::WorkerInfo {
                worker_id: id.to_string(),
                hostname: record.hostname.clone(),
                slots: record.slots,
                busy: record.running.values().sum(),
                last_seen_s: now.duration_since(record.last_seen).as_secs_f64(),
            })
            .collect();
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(Response::new(v1::ListWorkersResponse { workers }))
    }

    async fn list_stages(
        &self,
        _request: Request<v1::ListStagesRequest>,
    ) -> Result<Response<v1::ListStagesResponse>, Status> {
        Ok(Response::new(super::client_views::stage_overviews(
            &self.coordinator.lock(),
        )))
    }

    async fn job_log(
        &self,
        request: Request<v1::JobLogRequest>,
    ) -> Result<Response<v1::JobLogResponse>, Status> {
        super::client_views::job_log(&self.coordinator.lock(), &request.into_inner())
            .map(Response::new)
    }

    async fn job_metrics(
        &self,
        request: Request<v1::JobMetricsRequest>,
    ) -> Result<Response<v1::JobMetricsResponse>, Status> {
        super::client_views::job_metrics(&self.coordinator.lock(), &request.into_inner())
            .map(Response::new)
    }

    async fn update_idea(
        &self,
        request: Request<v1::UpdateIdeaRequest>,
    ) -> Result<Response<v1::UpdateIdeaResponse>, Status> {
        let request = request.into_inner();
        let applied = self.coordinator.lock().update_idea(ResearcherUpdate {
            reason: request.reason,
            source: if request.source.trim().is_empty() {
                "researcher (the UpdateIdea call)".to_owned()
            } else {
                request.source
            },
            new_idea_md: request.idea_md,
            what_changed: request.what_changed,
        })?;
        Ok(Response::new(v1::UpdateIdeaResponse {
            from_version: applied.from_version,
            to_version: applied.to_version,
            event_seq: applied.event_seq,
            diff: applied.diff,
        }))
    }
}
