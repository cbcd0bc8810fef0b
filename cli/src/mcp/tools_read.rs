//! The tools that read the evidence: summary, claims, job_logs, metrics, report.
//! They read the workspace's files (what `expcluster report` reads) or ask the
//! coordinator (logs), and never write, except `report`, which writes report.md.

use super::server::{failure, ExpclusterMcp};
use super::tools_run::parse_stage;
use anyhow::{bail, Context};
use expcluster_core::json_float::to_json;
use expcluster_proto::v1;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::Path;

/// Lines of a log `job_logs` returns by default, and at most.
const LOG_LINES_DEFAULT: usize = 200;
const LOG_LINES_MAX: usize = 5000;
/// Points of each series `metrics` returns by default, and at most.
const POINTS_DEFAULT: usize = 1000;
const POINTS_MAX: usize = 100_000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryArgs {
    /// baselines, full or ablations (the stages that write a summary).
    pub stage: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Summary {
    pub stage: String,
    /// The summary file, relative to the workspace.
    pub file: String,
    /// Its content: per-method statistics, tests, learning curves, analysis.
    pub summary: Value,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimsArgs {
    /// Only this claim id.
    #[serde(default)]
    pub claim: Option<String>,
    /// Only the verdicts after this stage.
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Claims {
    /// The latest verdict of each claim.
    pub latest: Vec<Verdict>,
    /// Every verdict, in the research log's order.
    pub verdicts: Vec<Verdict>,
    /// idea.json's `claim_status` (what the idea records of each claim).
    pub recorded: Value,
}

/// One `hypothesis_evaluated` event.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Verdict {
    pub claim: String,
    pub statement: String,
    /// supported, contradicted or inconclusive.
    pub status: String,
    pub stage: String,
    pub stage_run: Value,
    pub idea_version: Value,
    /// The event's `seq` in research_log.jsonl.
    pub seq: Value,
    /// The decision rule, in words.
    pub rule: String,
    /// One sentence.
    pub summary: String,
    /// The tests behind the verdict.
    pub evidence: Value,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLogsArgs {
    /// The job id (see status with its stage).
    pub job_id: String,
    /// stdout (default), stderr or worker.
    #[serde(default)]
    pub stream: Option<String>,
    /// The attempt (default: the latest).
    #[serde(default)]
    pub attempt: Option<u32>,
    /// The last lines to return (default 200, at most 5000).
    #[serde(default)]
    pub tail_lines: Option<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct JobLog {
    pub job_id: String,
    pub attempt: u32,
    pub stream: String,
    /// The job's state.
    pub state: String,
    /// False while nothing of the attempt's log is stored yet.
    pub exists: bool,
    /// The attempt still runs: this is its output so far.
    pub running: bool,
    pub lines_total: usize,
    /// The last lines (all when there are fewer than asked).
    pub tail: String,
    /// The job's last stderr lines as the coordinator keeps them.
    pub stderr_tail: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsArgs {
    /// The job id.
    pub job_id: String,
    /// Only this metric.
    #[serde(default)]
    pub metric: Option<String>,
    /// The last points of each series to return (default 1000).
    #[serde(default)]
    pub max_points: Option<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Metrics {
    pub job_id: String,
    pub stage_run: Value,
    pub attempt: Value,
    pub fingerprint: Value,
    /// The job's state: queued, running, succeeded, failed or cancelled.
    pub state: String,
    /// True while the attempt runs: the series are its points so far, and grow.
    pub live: bool,
    /// The last value of each metric.
    pub final_metrics: Map<String, Value>,
    /// Each metric's values in the order the job printed them (the last max_points).
    pub series: Map<String, Value>,
    /// How many points each series has in all.
    pub points_total: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportArgs {
    /// Redraw the figures first.
    #[serde(default)]
    pub plot: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Report {
    pub path: String,
    /// report.md's text.
    pub text: String,
}

#[tool_router(router = read_tools, vis = "pub(super)")]
impl ExpclusterMcp {
    /// A stage's summary JSON (baseline_summary.json, research_summary.json or
    /// ablation_summary.json): per-method statistics, tests, curves, analysis.
    #[tool]
    async fn summary(
        &self,
        Parameters(args): Parameters<SummaryArgs>,
    ) -> Result<Json<Summary>, String> {
        let run = || -> anyhow::Result<Summary> {
            let stage = parse_stage(&args.stage)?;
            let file = stage.summary_file().with_context(|| {
                format!("the {stage} stage writes no summary (its arrays are under experiment_results/): ask for baselines, full or ablations")
            })?;
            let root = self.backend.workspace()?;
            let Ok(bytes) = std::fs::read(root.join(file)) else {
                bail!("no {file} yet: submit the {stage} stage and wait for it to finish");
            };
            let summary =
                serde_json::from_slice(&bytes).with_context(|| format!("{file} is not JSON"))?;
            Ok(Summary {
                stage: stage.to_string(),
                file: file.to_owned(),
                summary,
            })
        };
        run().map(Json).map_err(failure)
    }

    /// Each claim of config.yaml with its verdicts (supported, contradicted,
    /// inconclusive) after each stage and the evidence behind them.
    #[tool]
    async fn claims(
        &self,
        Parameters(args): Parameters<ClaimsArgs>,
    ) -> Result<Json<Claims>, String> {
        let run = || -> anyhow::Result<Claims> {
            if let Some(stage) = &args.stage {
                parse_stage(stage)?;
            }
            let root = self.backend.workspace()?;
            let verdicts: Vec<Verdict> = crate::commands::report::claim_verdicts(root)
                .iter()
                .filter(|event| {
                    args.claim
                        .as_deref()
                        .is_none_or(|claim| event["claim"] == claim)
                })
                .filter(|event| {
                    args.stage
                        .as_deref()
                        .is_none_or(|stage| event["stage"] == stage)
                })
                .map(verdict)
                .collect();
            let mut latest: Vec<Verdict> = Vec::new();
            for verdict in verdicts.iter().rev() {
                if !latest.iter().any(|seen| seen.claim == verdict.claim) {
                    latest.push(verdict.clone());
                }
            }
            latest.reverse();
            let idea = expcluster_coordinator::store::workspace::Workspace::open(root)
                .map(|workspace| expcluster_coordinator::stage::idea::read_idea_json(&workspace))
                .unwrap_or_default();
            Ok(Claims {
                latest,
                verdicts,
                recorded: idea
                    .get("claim_status")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new())),
            })
        };
        run().map(Json).map_err(failure)
    }

    /// The tail of a job's stdout, stderr or worker log, as the coordinator holds it
    /// (its output so far while it runs).
    #[tool]
    async fn job_logs(
        &self,
        Parameters(args): Parameters<JobLogsArgs>,
    ) -> Result<Json<JobLog>, String> {
        let run = async {
            let stream = args.stream.unwrap_or_else(|| "stdout".to_owned());
            if !["stdout", "stderr", "worker"].contains(&stream.as_str()) {
                bail!("unknown stream {stream:?}: stdout, stderr or worker");
            }
            let mut connection = self.backend.connect().await?;
            let read = crate::commands::logs::fetch_log(
                &mut connection.client,
                &connection.address,
                &args.job_id,
                &stream,
                args.attempt.unwrap_or(0),
            )
            .await?;
            let text = String::from_utf8_lossy(&read.content);
            let lines: Vec<&str> = text.lines().collect();
            let keep = args
                .tail_lines
                .unwrap_or(LOG_LINES_DEFAULT)
                .min(LOG_LINES_MAX);
            let tail = lines[lines.len().saturating_sub(keep)..].join("\n");
            Ok::<_, anyhow::Error>(JobLog {
                job_id: args.job_id,
                attempt: read.attempt,
                stream,
                state: read.state.to_owned(),
                exists: read.exists,
                running: read.running,
                lines_total: lines.len(),
                tail,
                stderr_tail: read.stderr_tail,
            })
        };
        run.await.map(Json).map_err(failure)
    }

    /// A job's metric series and final values: live from the coordinator while the
    /// job runs (its points so far), else its latest attempt as the coordinator holds
    /// it, else its stored result (experiment_results/job_results.jsonl).
    #[tool]
    async fn metrics(
        &self,
        Parameters(args): Parameters<MetricsArgs>,
    ) -> Result<Json<Metrics>, String> {
        let run = async {
            let keep = args.max_points.unwrap_or(POINTS_DEFAULT).min(POINTS_MAX);
            let live = self.live_metrics(&args, keep).await?;
            let metrics = match live {
                Some(live) => live,
                None => stored_metrics(self.backend.workspace()?, &args, keep)?,
            };
            if let Some(metric) = args
                .metric
                .as_deref()
                .filter(|_| metrics.series.is_empty() && metrics.final_metrics.is_empty())
            {
                bail!("job {:?} printed no metric {metric:?}", args.job_id);
            }
            Ok::<_, anyhow::Error>(metrics)
        };
        run.await.map(Json).map_err(failure)
    }

    /// Write report.md (the idea, every summary, the claims' verdicts, the figures,
    /// the idea's evolution) and return its text.
    #[tool]
    async fn report(
        &self,
        Parameters(args): Parameters<ReportArgs>,
    ) -> Result<Json<Report>, String> {
        let run = || -> anyhow::Result<Report> {
            let root = self.backend.workspace()?;
            let (path, text) = crate::commands::report::write(root, args.plot)?;
            Ok(Report {
                path: path.display().to_string(),
                text,
            })
        };
        run().map(Json).map_err(failure)
    }
}

impl ExpclusterMcp {
    /// The coordinator's view of the job's latest attempt; `None` when it holds no
    /// points of it (not run since the coordinator started, or reset by a new lease
    /// that printed nothing yet) and the job is not running.
    async fn live_metrics(
        &self,
        args: &MetricsArgs,
        keep: usize,
    ) -> anyhow::Result<Option<Metrics>> {
        let mut connection = self.backend.connect().await?;
        let answer = connection
            .client
            .job_metrics(v1::JobMetricsRequest {
                job_id: args.job_id.clone(),
                metric: args.metric.clone().unwrap_or_default(),
                max_points: u32::try_from(keep).unwrap_or(u32::MAX),
            })
            .await;
        let answer = match answer {
            Ok(answer) => answer.into_inner(),
            // A job of an earlier coordinator's run: its stored result may still be there.
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => {
                return Err(crate::commands::status::explain(
                    status,
                    &connection.address,
                ))
            }
        };
        if answer.series.is_empty() && !answer.attempt_running {
            return Ok(None);
        }
        let mut series = Map::new();
        let mut points_total = Map::new();
        let mut final_metrics = Map::new();
        for metric in answer.series {
            let values: Vec<Value> = metric.values.iter().map(|v| to_json(*v)).collect();
            if let Some(last) = metric.values.last() {
                final_metrics.insert(metric.name.clone(), to_json(*last));
            }
            points_total.insert(metric.name.clone(), metric.points_total.into());
            series.insert(metric.name, values.into());
        }
        let state = crate::output::state_name(answer.job_state).to_owned();
        Ok(Some(Metrics {
            job_id: answer.job_id,
            stage_run: answer.stage_run.into(),
            attempt: answer.attempt.into(),
            fingerprint: answer.fingerprint.into(),
            state,
            live: answer.attempt_running,
            final_metrics,
            series,
            points_total,
        }))
    }
}

/// The job's latest succeeded attempt as job_results.jsonl stores it.
fn stored_metrics(root: &Path, args: &MetricsArgs, keep: usize) -> anyhow::Result<Metrics> {
    let record = latest_result(root, &args.job_id)?.with_context(|| {
        format!("no metrics for job {:?}: the coordinator does not know it and no result of it is stored (check the job id with status and its stage)", args.job_id)
    })?;
    let wanted = |name: &String| args.metric.as_deref().is_none_or(|metric| name == metric);
    let mut series = Map::new();
    let mut points_total = Map::new();
    for (name, values) in record["series"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| wanted(name))
    {
        let values = values.as_array().cloned().unwrap_or_default();
        points_total.insert(name.clone(), values.len().into());
        series.insert(
            name.clone(),
            values[values.len().saturating_sub(keep)..].to_vec().into(),
        );
    }
    let final_metrics: Map<String, Value> = record["final_metrics"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| wanted(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Ok(Metrics {
        job_id: args.job_id.clone(),
        stage_run: record["stage_run"].clone(),
        attempt: record["attempt"].clone(),
        fingerprint: record["fingerprint"].clone(),
        state: "succeeded".to_owned(),
        live: false,
        final_metrics,
        series,
        points_total,
    })
}

fn verdict(event: &Value) -> Verdict {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    Verdict {
        claim: text(&event["claim"]),
        statement: text(&event["statement"]),
        status: text(&event["status"]),
        stage: text(&event["stage"]),
        stage_run: event["stage_run"].clone(),
        idea_version: event["idea_version"].clone(),
        seq: event["seq"].clone(),
        rule: text(&event["rule"]),
        summary: text(&event["summary"]),
        evidence: event["evidence"].clone(),
    }
}

/// The last line of job_results.jsonl for `job_id` (its latest succeeded attempt).
fn latest_result(root: &Path, job_id: &str) -> anyhow::Result<Option<Value>> {
    let path = root.join("experiment_results").join("job_results.jsonl");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(anyhow::anyhow!("cannot read {}: {err}", path.display())),
    };
    let mut latest = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        // Most lines are other jobs': parse only the candidates.
        if !line.contains(job_id) {
            continue;
        }
        if let Ok(record) = serde_json::from_str::<Value>(&line) {
            if record["job_id"] == job_id {
                latest = Some(record);
            }
        }
    }
    Ok(latest)
}
