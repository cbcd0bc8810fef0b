//! The tools that make and run an experiment: init, validate, submit, wait, status,
//! cancel. Each is the CLI command's own function, answered as data.

use super::server::{failure, ExpclusterMcp};
use crate::commands::init::Created;
use crate::commands::validate::{ConfigProblem, JobMatrix};
use crate::output::{job_json, stage_status_json};
use crate::progress::{latest_primary, Counts};
use anyhow::{bail, Context};
use expcluster_core::Stage;
use expcluster_proto::v1;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How often `wait` asks the coordinator.
const POLL: Duration = Duration::from_millis(250);
/// `wait`'s default and longest time.
const WAIT_DEFAULT_S: f64 = 300.0;
const WAIT_MAX_S: f64 = 3600.0;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitArgs {
    /// The idea's name; it must be the name of the workspace folder this server was
    /// started on (the default).
    #[serde(default)]
    pub idea: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Validation {
    pub valid: bool,
    /// The job matrix of every stage the config defines (when valid).
    pub matrix: Option<JobMatrix>,
    /// The first error, with its file, line and column (when not valid).
    pub error: Option<ConfigProblem>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitArgs {
    /// implementation, baselines, full or ablations (one stage: the next needs its results).
    pub stage: String,
    /// Run every job again, even those with a result for the same code and config.
    #[serde(default)]
    pub rerun: bool,
    /// Run the stage even though no earlier stage of the config has completed.
    #[serde(default)]
    pub force: bool,
    /// Open the second and last look of the stage's declared two-look design
    /// (`sequential:` in the stage): run it on max_seeds and judge its inconclusive
    /// claims again at the second look's level (docs/statistics.md).
    #[serde(default)]
    pub seeds_for_power: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Submitted {
    pub stage: String,
    /// The coordinator's id of this run of the stage.
    pub run_id: String,
    pub jobs_total: u32,
    /// Jobs that already have a result for the same code and config (not run again).
    pub jobs_reused: u32,
    /// The stage was already running and this submission attached to it.
    pub attached: bool,
    /// The stage-order warning, when an earlier stage was skipped.
    pub warning: Option<String>,
    /// What the submission did beyond the config (a second look: its seeds, levels).
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The submitted stage to wait for.
    pub stage: String,
    /// Seconds to wait at most before answering with the progress so far (default 300, at most 3600).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// A stage's progress.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StageProgress {
    pub stage: String,
    /// Every job is final and the stage's summary and claims are written.
    pub finished: bool,
    /// The timeout passed first: call wait again to keep waiting.
    pub timed_out: bool,
    /// The idea version the stage runs against.
    pub idea_version: u32,
    pub jobs_total: u64,
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub primary_metric: String,
    /// The mean of the primary metric's latest values over the jobs that printed it.
    pub primary_mean: Option<f64>,
    /// Each failed job's error and last stderr lines.
    pub failed_jobs: Vec<FailedJob>,
    /// Files the stage wrote, relative to the workspace.
    pub outputs: Vec<String>,
    /// Every job, as `expcluster status --stage S --json` shows it.
    pub jobs: Vec<Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FailedJob {
    pub job_id: String,
    pub attempt: u32,
    pub error: String,
    pub stderr_tail: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// A stage whose jobs to show; without it, every stage and worker.
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Status {
    /// Every stage and worker, as `expcluster status --json` (without a stage).
    pub overview: Option<Value>,
    /// The stage's jobs, as `expcluster status --stage S --json` (with a stage).
    pub stage: Option<Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    /// Cancel the queued and running jobs of this stage.
    #[serde(default)]
    pub stage: Option<String>,
    /// Or cancel one job.
    #[serde(default)]
    pub job_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Cancelled {
    pub cancelled: u32,
}

/// A stage name as the tools take it.
pub fn parse_stage(name: &str) -> anyhow::Result<Stage> {
    if name == "all" {
        bail!("submit and wait take one stage (implementation, baselines, full or ablations): each stage needs the results of the one before");
    }
    Stage::parse(name).map_err(anyhow::Error::msg)
}

#[tool_router(router = run_tools, vis = "pub(super)")]
impl ExpclusterMcp {
    /// Create the experiment workspace this server serves: idea.md, idea.json,
    /// idea_evolution.md, research_log.jsonl, a commented config.yaml and runfile.py.
    /// Never overwrites an idea.
    #[tool]
    async fn init(&self, Parameters(args): Parameters<InitArgs>) -> Result<Json<Created>, String> {
        let run = || -> anyhow::Result<Created> {
            let root = self.backend.workspace_path()?;
            let name = root
                .file_name()
                .and_then(|name| name.to_str())
                .context("the workspace path has no folder name")?;
            if let Some(idea) = args.idea.as_deref().filter(|idea| *idea != name) {
                bail!("this server serves the workspace {} (idea {name:?}), not {idea:?}: restart `expcluster mcp --workspace experiments/{idea}` for another idea", root.display());
            }
            let parent = root.parent().context("the workspace path has no parent")?;
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            crate::commands::init::create(parent, name)
        };
        run().map(Json).map_err(failure)
    }

    /// Check config.yaml and expand every stage's jobs, running nothing: the job
    /// matrix, or the first error with its file, line and column.
    #[tool]
    async fn validate(
        &self,
        Parameters(NoArgs {}): Parameters<NoArgs>,
    ) -> Result<Json<Validation>, String> {
        let run = || -> anyhow::Result<Validation> {
            let root = self.backend.workspace()?;
            Ok(match crate::commands::validate::check(root)? {
                Ok(matrix) => Validation {
                    valid: true,
                    matrix: Some(matrix),
                    error: None,
                },
                Err(problem) => Validation {
                    valid: false,
                    matrix: None,
                    error: Some(problem),
                },
            })
        };
        run().map(Json).map_err(failure)
    }

    /// Submit one stage and return at once with its run id; the stage runs on (wait
    /// follows it). The stage order is checked as `expcluster submit` does.
    #[tool]
    async fn submit(
        &self,
        Parameters(args): Parameters<SubmitArgs>,
    ) -> Result<Json<Submitted>, String> {
        let run = async {
            let stage = parse_stage(&args.stage)?;
            if let Ok(root) = self.backend.workspace() {
                crate::commands::submit::check_config(root)?;
            }
            let mut connection = self.backend.connect().await?;
            let submitted = crate::commands::submit::submit_stage(
                &mut connection.client,
                stage,
                crate::commands::submit::SubmitFlags {
                    rerun: args.rerun,
                    force: args.force,
                    seeds_for_power: args.seeds_for_power,
                },
                &connection.address,
            )
            .await?;
            Ok::<_, anyhow::Error>(Submitted {
                stage: stage.to_string(),
                run_id: submitted.response.stage_run_id,
                jobs_total: submitted.response.jobs_total,
                jobs_reused: submitted.response.jobs_reused,
                attached: submitted.response.attached,
                note: (!submitted.response.note.is_empty()).then_some(submitted.response.note),
                warning: submitted.warning,
            })
        };
        run.await.map(Json).map_err(failure)
    }

    /// Wait for a submitted stage to finish, up to timeout_s; answers with its
    /// progress (finished or not). Sends progress notifications as jobs end when the
    /// call carries a progress token.
    #[tool]
    async fn wait(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<StageProgress>, String> {
        self.wait_for(args, context)
            .await
            .map(Json)
            .map_err(failure)
    }

    /// Every stage and worker, or one stage's jobs with their latest metrics.
    #[tool]
    async fn status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
    ) -> Result<Json<Status>, String> {
        let run = async {
            let stage = args
                .stage
                .as_deref()
                .map(Stage::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let mut connection = self.backend.connect().await?;
            let Some(stage) = stage else {
                let overview =
                    crate::commands::status::overview(&mut connection.client, &connection.address)
                        .await?;
                return Ok::<_, anyhow::Error>(Status {
                    overview: Some(overview.to_json()),
                    stage: None,
                });
            };
            let status = stage_status(&mut connection, stage).await?;
            Ok(Status {
                overview: None,
                stage: Some(stage_status_json(&status)),
            })
        };
        run.await.map(Json).map_err(failure)
    }

    /// Cancel a stage's queued and running jobs, or one job.
    #[tool]
    async fn cancel(
        &self,
        Parameters(args): Parameters<CancelArgs>,
    ) -> Result<Json<Cancelled>, String> {
        let run = async {
            if let Some(stage) = &args.stage {
                Stage::parse(stage).map_err(anyhow::Error::msg)?;
            }
            let mut connection = self.backend.connect().await?;
            let cancelled = crate::commands::cancel::cancel(
                &mut connection.client,
                &connection.address,
                args.stage.as_deref(),
                args.job_id.as_deref(),
            )
            .await?;
            Ok::<_, anyhow::Error>(Cancelled { cancelled })
        };
        run.await.map(Json).map_err(failure)
    }
}

impl ExpclusterMcp {
    async fn wait_for(
        &self,
        args: WaitArgs,
        context: RequestContext<RoleServer>,
    ) -> anyhow::Result<StageProgress> {
        let stage = parse_stage(&args.stage)?;
        let timeout = args.timeout_s.unwrap_or(WAIT_DEFAULT_S);
        if !timeout.is_finite() || timeout < 0.0 {
            bail!("timeout_s must be a number of seconds between 0 and {WAIT_MAX_S}");
        }
        let deadline = Instant::now() + Duration::from_secs_f64(timeout.min(WAIT_MAX_S));
        let token = context.meta.get_progress_token();
        let mut connection = self.backend.connect().await?;
        let mut last: Option<(Counts, usize)> = None;
        loop {
            let status = stage_status(&mut connection, stage).await?;
            let counts = Counts::of(&status.jobs);
            let timed_out = !status.finished && Instant::now() >= deadline;
            if let Some(token) = &token {
                if last != Some((counts, status.jobs.len())) {
                    last = Some((counts, status.jobs.len()));
                    let note =
                        ProgressNotificationParam::new(token.clone(), counts.terminal() as f64)
                            .with_total(status.jobs.len() as f64)
                            .with_message(progress_line(&status, &counts));
                    // A client gone away ends the call below; a lost note changes nothing.
                    let _ = context.peer.notify_progress(note).await;
                }
            }
            if status.finished || timed_out || context.ct.is_cancelled() {
                return Ok(progress(&status, counts, timed_out));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = context.ct.cancelled() => {}
            }
        }
    }
}

async fn stage_status(
    connection: &mut super::backend::Connection,
    stage: Stage,
) -> anyhow::Result<v1::StageStatusResponse> {
    Ok(connection
        .client
        .stage_status(v1::StageStatusRequest {
            stage: stage.to_string(),
        })
        .await
        .map_err(|status| crate::commands::status::explain(status, &connection.address))?
        .into_inner())
}

/// The line `submit` prints off a terminal, as the notification's message.
fn progress_line(status: &v1::StageStatusResponse, counts: &Counts) -> String {
    let all: Vec<&v1::JobStatus> = status.jobs.iter().collect();
    let metric = latest_primary(&all, &status.primary_metric)
        .map(|(mean, n)| {
            format!(
                " · {} {} (mean of {n})",
                status.primary_metric,
                crate::output::format_value(mean)
            )
        })
        .unwrap_or_default();
    format!(
        "[{}] {} (of {}){metric}",
        status.stage,
        counts.describe(),
        status.jobs.len()
    )
}

fn progress(status: &v1::StageStatusResponse, counts: Counts, timed_out: bool) -> StageProgress {
    let all: Vec<&v1::JobStatus> = status.jobs.iter().collect();
    StageProgress {
        stage: status.stage.clone(),
        finished: status.finished,
        timed_out,
        idea_version: status.idea_version,
        jobs_total: status.jobs.len() as u64,
        queued: counts.queued,
        running: counts.running,
        succeeded: counts.succeeded,
        failed: counts.failed,
        cancelled: counts.cancelled,
        primary_metric: status.primary_metric.clone(),
        primary_mean: latest_primary(&all, &status.primary_metric).map(|(mean, _)| mean),
        failed_jobs: status
            .jobs
            .iter()
            .filter(|job| job.state == v1::JobState::Failed as i32)
            .map(|job| FailedJob {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
                error: job.error.clone(),
                stderr_tail: job.stderr_tail.clone(),
            })
            .collect(),
        outputs: status.outputs.clone(),
        jobs: status.jobs.iter().map(job_json).collect(),
    }
}
