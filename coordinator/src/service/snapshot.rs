//! Read-only views of the coordinator for in-process watchers (the dashboard): each
//! copies what it needs under the state lock, briefly, and is serialized after the
//! lock is released. Together with [`crate::store::live_feed`] they give a watcher the state now
//! and every change after it.
//!
//! Views reuse the wire types of the `status` calls ([`crate::service::convert`]), so
//! the dashboard and the CLI show the same numbers.

use crate::service::{client_views, convert};
use crate::store::live_feed::LiveEvent;
use crate::Coordinator;
use expcluster_core::{JobId, Stage};
use expcluster_proto::v1;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::sync::broadcast;

/// The status codes [`Coordinator::job_log`] answers with.
pub use tonic::Code;

/// A wire job state's name, as `status` and the dashboard print it.
pub fn job_state_name(state: i32) -> &'static str {
    match v1::JobState::try_from(state) {
        Ok(v1::JobState::Queued) => "queued",
        Ok(v1::JobState::Running) => "running",
        Ok(v1::JobState::Succeeded) => "succeeded",
        Ok(v1::JobState::Failed) => "failed",
        Ok(v1::JobState::Cancelled) => "cancelled",
        Ok(v1::JobState::Unspecified) | Err(_) => "unknown",
    }
}

/// One worker as the coordinator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerView {
    pub worker_id: String,
    pub hostname: String,
    pub slots: u32,
    pub busy: u32,
    pub gpus: Vec<String>,
    pub last_seen_s: f64,
    pub jobs: Vec<String>,
}

/// A job's series of its latest attempt, by metric name, each thinned to a bound
/// ([`ThinnedSeries`]).
#[derive(Debug, Clone)]
pub struct JobSeries {
    pub job_id: String,
    pub variant: String,
    pub seed: u64,
    pub attempt: u32,
    pub running: bool,
    pub series: BTreeMap<String, ThinnedSeries>,
}

/// At most a given number of a series' points, by an even stride of steps that keeps
/// the last one; skipped steps are left out. Taken under the state lock, so it costs
/// the bound, not the series' length: a job that printed a million points is a
/// curve of a thousand on a page, and never a million-value copy under the lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThinnedSeries {
    pub steps: Vec<u64>,
    pub values: Vec<f64>,
    /// How many steps the whole series spans.
    pub len: usize,
}

impl ThinnedSeries {
    pub fn of(values: &[f64], max_points: usize) -> Self {
        let len = values.len();
        let mut thinned = Self {
            len,
            ..Self::default()
        };
        for step in crate::store::live_feed::sample_indices(len, max_points) {
            // NaN marks a step the job never reported.
            if !values[step].is_nan() {
                thinned.steps.push(step as u64);
                thinned.values.push(values[step]);
            }
        }
        thinned
    }
}

impl Coordinator {
    /// Every change from now on ([`crate::store::live_feed`]). Subscribe first, then take the
    /// snapshots: nothing falls between them.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.lock().live.subscribe()
    }

    /// Every stage with its job counts (what `expcluster status` shows).
    pub fn stages_view(&self) -> v1::ListStagesResponse {
        client_views::stage_overviews(&self.lock())
    }

    /// Every worker, by id.
    pub fn workers_view(&self) -> Vec<WorkerView> {
        let state = self.lock();
        let now = Instant::now();
        let mut workers: Vec<WorkerView> = state
            .workers
            .iter()
            .map(|(id, record)| WorkerView {
                worker_id: id.to_string(),
                hostname: record.hostname.clone(),
                slots: record.slots,
                busy: record.running.values().sum(),
                gpus: record.gpus.clone(),
                last_seen_s: now.duration_since(record.last_seen).as_secs_f64(),
                jobs: record.running.keys().map(ToString::to_string).collect(),
            })
            .collect();
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        workers
    }

    /// The jobs of the stage's latest run; `None` when it was never submitted.
    pub fn stage_jobs(&self, stage: Stage) -> Option<Vec<v1::JobStatus>> {
        let state = self.lock();
        let run = state.latest_run(stage)?;
        Some(
            run.jobs
                .iter()
                .filter_map(|id| state.jobs.get(id))
                .map(convert::job_status)
                .collect(),
        )
    }

    /// The series of one metric for every job of the stage's latest run that has it,
    /// each thinned to `max_points`.
    pub fn stage_series(&self, stage: Stage, metric: &str, max_points: usize) -> Vec<JobSeries> {
        let state = self.lock();
        let Some(run) = state.latest_run(stage) else {
            return Vec::new();
        };
        run.jobs
            .iter()
            .filter_map(|id| state.jobs.get(id))
            .filter_map(|job| {
                let values = job.series.get(metric)?;
                Some(JobSeries {
                    job_id: job.def.id.to_string(),
                    variant: job.def.variant.clone(),
                    seed: job.def.seed,
                    attempt: job.attempts,
                    running: matches!(job.state, crate::state::lifecycle::JobState::Running { .. }),
                    series: BTreeMap::from([(
                        metric.to_owned(),
                        ThinnedSeries::of(values, max_points),
                    )]),
                })
            })
            .collect()
    }

    /// Every series of one job's latest attempt, each thinned to `max_points`.
    pub fn job_series(&self, job: &JobId, max_points: usize) -> Option<JobSeries> {
        let state = self.lock();
        let record = state.jobs.get(job)?;
        Some(JobSeries {
            job_id: record.def.id.to_string(),
            variant: record.def.variant.clone(),
            seed: record.def.seed,
            attempt: record.attempts,
            running: matches!(
                record.state,
                crate::state::lifecycle::JobState::Running { .. }
            ),
            series: record
                .series
                .iter()
                .map(|(name, values)| (name.clone(), ThinnedSeries::of(values, max_points)))
                .collect(),
        })
    }

    /// A piece of a job's stored log (as `expcluster logs` reads it).
    pub fn job_log(
        &self,
        request: &v1::JobLogRequest,
    ) -> Result<v1::JobLogResponse, tonic::Status> {
        client_views::job_log(&self.lock(), request)
    }

    /// The workspace's root (the research log, idea files and summaries are read there).
    pub fn workspace_root(&self) -> std::path::PathBuf {
        self.lock().workspace.root().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::ThinnedSeries;

    #[test]
    fn a_thinned_series_keeps_the_bound_the_last_step_and_skips_gaps() {
        let short = ThinnedSeries::of(&[1.0, f64::NAN, 3.0], 10);
        assert_eq!(short.steps, [0, 2]);
        assert_eq!(short.values, [1.0, 3.0]);
        assert_eq!(short.len, 3);
        let values: Vec<f64> = (0..1_000_000).map(f64::from).collect();
        let long = ThinnedSeries::of(&values, 1000);
        assert_eq!(long.steps.len(), 1000);
        assert_eq!(long.steps.last(), Some(&999_999));
        assert!(long.steps.windows(2).all(|w| w[1] - w[0] == 1000));
        assert!(long
            .steps
            .iter()
            .zip(&long.values)
            .all(|(s, v)| *s as f64 == *v));
        assert_eq!(ThinnedSeries::of(&[], 10), ThinnedSeries::default());
    }
}
