//! Rebuilding the coordinator's state after a restart (or a crash).
//!
//! Two durable records say everything: the research log (outcomes of attempts, stage
//! starts and ends, all written before they were acknowledged) and the coordinator's
//! journal (`.expcluster/journal.jsonl`: stage job definitions, leases, workers). The
//! replay follows the research log in order; a stage the research log never saw start
//! was never acknowledged and is dropped. Attempts that were running get their lease
//! renewed to now + lease + grace, so no worker is declared lost while workers
//! reattach (their ids are journaled, so their heartbeats keep working), and their
//! acknowledged metric points are reloaded from the per-attempt spools.

use crate::error::CoordinatorError;
use crate::ops::{CoordinatorState, StageRun};
use crate::state::lifecycle::JobState;
use crate::state::records::{JobRecord, WorkerRecord};
use crate::state::reports::{CompletionKey, Outcome};
use crate::store::code_files::CodeFiles;
use crate::store::metric_spool::MetricSpool;
use crate::store::workspace::{write_atomic, Workspace};
use expcluster_core::{JobDefinition, JobId, Stage, WorkerId};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// What a recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub stage_runs: usize,
    pub running_attempts: usize,
    pub queued_jobs: usize,
    pub workers: usize,
}

/// Keeps a copy of the code a stage ships, so a restarted coordinator sends the same
/// code to requeued jobs even if the researcher has edited it since.
pub fn snapshot_code(workspace: &Workspace, code: &CodeFiles) -> std::io::Result<()> {
    let dir = workspace.state_dir().join("code").join(&code.digest);
    if dir.is_dir() {
        return Ok(());
    }
    for (name, content) in &code.files {
        write_atomic(&dir.join(name), content)?;
    }
    std::fs::create_dir_all(&dir)
}

fn load_code(workspace: &Workspace, digest: &str) -> CodeFiles {
    let dir = workspace.state_dir().join("code").join(digest);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    CodeFiles {
        files,
        digest: digest.to_owned(),
    }
}

/// A lease found in the journal: who ran which attempt (and, for a gang, the worker
/// of every rank in rank order).
struct RecoveredLease {
    run: u64,
    job: JobId,
    attempt: u32,
    worker: WorkerId,
    gang: Vec<WorkerId>,
}

fn u64_of(event: &Value, key: &str) -> Option<u64> {
    event.get(key).and_then(Value::as_u64)
}

impl CoordinatorState {
    /// Rebuilds stages, jobs, leases and workers from the journal and the research log.
    pub fn recover(&mut self, now: Instant) -> Result<Recovered, CoordinatorError> {
        let journal: Vec<Value> = self.journal.events().to_vec();
        let log: Vec<Value> = self.log.events().to_vec();
        let mut recovered = Recovered::default();

        let mut stage_records: HashMap<u64, &Value> = HashMap::new();
        let mut leases: Vec<RecoveredLease> = Vec::new();
        // Rank 0's published communicator ids, by (job, attempt).
        let mut rendezvous: HashMap<(String, u64), Vec<u8>> = HashMap::new();
        for record in &journal {
            match record["type"].as_str() {
                Some("rendezvous") => {
                    if let (Some(job), Some(attempt), Some(Ok(id))) = (
                        record["job_id"].as_str(),
                        u64_of(record, "attempt"),
                        record["id_hex"].as_str().map(hex::decode),
                    ) {
                        rendezvous.insert((job.to_owned(), attempt), id);
                    }
                }
                Some("stage") => {
                    if let Some(run) = u64_of(record, "stage_run") {
                        stage_records.insert(run, record);
                    }
                }
                Some("worker") => self.restore_worker(record, now),
                Some("reattach") => {
                    // A restarted worker took over these attempts (reattach.rs); its
                    // previous id is retired.
                    let Some(moved) = crate::ops::reattach::recovered(record) else {
                        continue;
                    };
                    for (run, job, attempt) in moved.attempts {
                        leases.push(RecoveredLease {
                            run,
                            job,
                            attempt,
                            worker: moved.worker.clone(),
                            gang: Vec::new(),
                        });
                    }
                    self.workers.remove(&moved.previous);
                    self.retired_workers.insert(moved.previous, moved.worker);
                }
                Some("lease") => {
                    let worker =
                        WorkerId(record["worker_id"].as_str().unwrap_or_default().to_owned());
                    for lease in record["leases"].as_array().into_iter().flatten() {
                        let (Some(run), Some(attempt), Some(job)) = (
                            u64_of(lease, "stage_run"),
                            u64_of(lease, "attempt"),
                            lease["job_id"]
                                .as_str()
                                .and_then(|id| JobId::parse(id).ok()),
                        ) else {
                            continue;
                        };
                        let gang: Vec<WorkerId> = lease["gang"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|w| w.as_str().map(|w| WorkerId(w.to_owned())))
                            .collect();
                        leases.push(RecoveredLease {
                            run,
                            job,
                            attempt: attempt as u32,
                            worker: worker.clone(),
                            gang,
                        });
                    }
                }
                _ => {}
            }
        }
        recovered.workers = self.workers.len();

        // Outcomes per (run, job, attempt), from the research log, in order.
        let mut outcome_attempts: HashSet<(u64, JobId, u32)> = HashSet::new();
        // The latest success of each job, in whichever run: whose results line must
        // exist (a job reused by a later run still needs its earlier run's line).
        let mut successes: HashMap<JobId, &Value> = HashMap::new();
        for event in &log {
            let kind = event["type"].as_str().unwrap_or_default();
            if kind == "stage_started" {
                let Some(run) = u64_of(event, "stage_run") else {
                    continue;
                };
                if let Some(record) = stage_records.get(&run) {
                    self.restore_stage(run, record)?;
                    recovered.stage_runs += 1;
                }
                continue;
            }
            if kind == "experiment_completed" {
                if let Some(run) = u64_of(event, "stage_run")
                    .and_then(|run| self.stage_runs.iter_mut().find(|r| r.id == run))
                {
                    run.finished = true;
                    run.outputs =
                        serde_json::from_value(event["outputs"].clone()).unwrap_or_default();
                }
                continue;
            }
            let (Some(run), Some(job_id)) = (
                u64_of(event, "stage_run"),
                event["job_id"]
                    .as_str()
                    .and_then(|id| JobId::parse(id).ok()),
            ) else {
                continue;
            };
            if kind == "job_reattached" {
                // Not an outcome: the attempt carries on (the journal's `reattach`
                // record says who holds it now).
                continue;
            }
            if kind == "job_completed" && event["status"] == "succeeded" {
                successes.insert(job_id.clone(), event);
            }
            let attempt = u64_of(event, "attempt").unwrap_or(0) as u32;
            let Some(job) = self
                .jobs
                .get_mut(&job_id)
                .filter(|job| job.stage_run == run)
            else {
                continue;
            };
            job.attempts = job.attempts.max(attempt);
            outcome_attempts.insert((run, job_id.clone(), attempt));
            // The answer a replayed completion of this attempt must get again.
            let exit_code = event["exit_code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(0);
            let answer = match (kind, event["status"].as_str(), event["outcome"].as_str()) {
                ("job_completed", Some("succeeded"), _) => Some((Outcome::Succeeded, false)),
                ("job_completed", _, _) => Some((Outcome::Failed, false)),
                ("job_attempt_failed", _, _) => Some((Outcome::Failed, true)),
                ("job_preempted", _, Some("cancelled")) => Some((Outcome::Cancelled, true)),
                ("job_preempted", _, _) => Some((Outcome::Preempted, true)),
                _ => None,
            };
            if let Some((outcome, requeued)) = answer {
                job.completions
                    .insert(attempt, (CompletionKey { outcome, exit_code }, requeued));
            }
            job.state = match (kind, event["status"].as_str()) {
                ("job_completed", Some("succeeded")) => JobState::Succeeded { attempt },
                ("job_completed", _) => JobState::Failed {
                    reason: event["error"].as_str().unwrap_or_default().to_owned(),
                },
                ("job_attempt_failed", _) => {
                    job.failures += 1;
                    JobState::Queued { not_before: None }
                }
                ("job_preempted" | "job_requeued", _) => JobState::Queued { not_before: None },
                ("job_cancelled", _) => JobState::Cancelled,
                _ => continue,
            };
        }

        // Leases without an outcome are still running, as far as anyone knows.
        let deadline = now + self.settings.lease_timeout + self.settings.restart_grace;
        for lease in leases {
            let RecoveredLease {
                run,
                job: job_id,
                attempt,
                worker,
                gang,
            } = lease;
            if outcome_attempts.contains(&(run, job_id.clone(), attempt)) {
                continue;
            }
            let Some(job) = self
                .jobs
                .get_mut(&job_id)
                .filter(|job| job.stage_run == run)
            else {
                continue;
            };
            if job.state.is_terminal() || attempt < job.attempts {
                continue;
            }
            job.attempts = attempt;
            job.state = JobState::Running {
                worker: gang.first().unwrap_or(&worker).clone(),
                attempt,
                lease_deadline: deadline,
            };
            // A gang's ranks are all taken as delivered: a rank that never reached its
            // worker is not renewed, and its lease ending requeues the gang.
            let mut holders: Vec<(WorkerId, u32)> = vec![(worker.clone(), 1)];
            job.gang = None;
            if !gang.is_empty() {
                let mut by_worker: Vec<(WorkerId, u32)> = Vec::new();
                for holder in &gang {
                    match by_worker.iter_mut().find(|(w, _)| w == holder) {
                        Some((_, n)) => *n += 1,
                        None => by_worker.push((holder.clone(), 1)),
                    }
                }
                let mut restored = crate::state::gang::Gang::new(&by_worker, deadline);
                restored.rendezvous = rendezvous.remove(&(job_id.to_string(), u64::from(attempt)));
                job.gang = Some(restored);
                holders = by_worker;
            }
            for (holder, count) in holders {
                if let Some(record) = self.workers.get_mut(&holder) {
                    record.running.insert(job_id.clone(), count);
                }
            }
        }

        let state_dir = self.workspace.state_dir();
        let mut order: Vec<JobId> = Vec::new();
        for run in &self.stage_runs {
            order.extend(run.jobs.iter().cloned());
        }
        for id in order {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            match &job.state {
                JobState::Running { attempt, .. } => {
                    let attempt = *attempt;
                    crate::store::job_metrics::replay_spool(
                        job,
                        &MetricSpool::path(&state_dir, &id, attempt),
                    );
                    recovered.running_attempts += 1;
                }
                JobState::Queued { .. } => {
                    self.queue.push_back(id.clone());
                    recovered.queued_jobs += 1;
                }
                JobState::Succeeded { .. } | JobState::Failed { .. } | JobState::Cancelled => {}
            }
        }
        self.repair_results_lines(successes);
        self.finish_stages_if_done()?;
        Ok(recovered)
    }

    /// Rebuilds the results lines a crash lost (or an older version kept in
    /// `metrics.json` files) for the latest success of each job.
    fn repair_results_lines(&mut self, successes: HashMap<JobId, &Value>) {
        for (job, event) in successes {
            let fingerprint = event["fingerprint"].as_str().unwrap_or_default();
            if self
                .completed
                .get(&job)
                .is_some_and(|done| done.line.is_some())
            {
                continue;
            }
            // The definition of that fingerprint (a later run may have changed it).
            let Some(def) = self
                .jobs
                .get(&job)
                .map(|record| &record.def)
                .filter(|def| def.fingerprint == fingerprint)
            else {
                continue;
            };
            let success = crate::store::job_metrics::Success { job, event };
            match crate::store::job_metrics::repair(
                &self.workspace,
                &mut self.results,
                def,
                &success,
            ) {
                Ok(Some(at)) => {
                    if let Some(done) = self.completed.get_mut(&success.job) {
                        done.line = Some(at);
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(job = %success.job, %err, "cannot rebuild the job's results line")
                }
            }
        }
    }

    fn restore_worker(&mut self, record: &Value, now: Instant) {
        let Some(id) = record["worker_id"].as_str() else {
            return;
        };
        if let Some(number) = id
            .strip_prefix('w')
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.next_worker = self.next_worker.max(number + 1);
        }
        // Seen "now": a restart does not make anyone lost before the grace ends.
        let hostname = record["hostname"].as_str().unwrap_or_default();
        let slots = u64_of(record, "slots").unwrap_or(1) as u32;
        self.workers.insert(
            WorkerId(id.to_owned()),
            WorkerRecord::new(hostname, slots, now),
        );
    }

    fn restore_stage(&mut self, run: u64, record: &Value) -> Result<(), CoordinatorError> {
        let definitions: Vec<JobDefinition> = serde_json::from_value(record["jobs"].clone())
            .map_err(|err| {
                CoordinatorError::Storage(format!("journal stage record {run}: {err}"))
            })?;
        let reused: HashSet<JobId> =
            serde_json::from_value(record["reused"].clone()).unwrap_or_default();
        let stage: Stage = serde_json::from_value(record["stage"].clone()).map_err(|err| {
            CoordinatorError::Storage(format!("journal stage record {run}: {err}"))
        })?;
        let max_attempts = u64_of(record, "max_attempts").unwrap_or(3) as u32;
        let ranks = u64_of(record, "data_parallel").unwrap_or(1) as u32;
        let timeout = Duration::from_millis(u64_of(record, "timeout_ms").unwrap_or(3_600_000));
        let mut ids = Vec::new();
        for def in definitions {
            let id = def.id.clone();
            let mut job = JobRecord::new(def, max_attempts, timeout, run).with_ranks(ranks);
            if reused.contains(&id) {
                job.state = JobState::Succeeded { attempt: 0 };
            }
            self.jobs.insert(id.clone(), job);
            ids.push(id);
        }
        let digest = record["code_digest"].as_str().unwrap_or_default();
        self.stage_runs.push(StageRun {
            id: run,
            stage,
            jobs: ids,
            reused,
            idea_version: u64_of(record, "idea_version").unwrap_or(1) as u32,
            finished: false,
            outputs: Vec::new(),
            primary_metric: record["primary_metric"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            code: std::sync::Arc::new(load_code(&self.workspace, digest)),
            final_prefix: 0,
            finishing: false,
        });
        Ok(())
    }
}
