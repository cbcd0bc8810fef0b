//! The operations: [`CoordinatorState`] (the records of [`crate::state`] plus the
//! open files of [`crate::store`]) and its methods, one per thing a worker or client
//! asks, each in the file named for it.
//!
//! One owner: [`crate::Coordinator`] keeps this behind a std mutex that is never held
//! across an `.await`. Every method takes `now` so the lease logic is testable without
//! sleeping. Workspace writes happen inside these methods, so an operation is only
//! acknowledged once what it changed is durable.

pub mod completion;
pub mod coordinator;
pub mod feedback;
pub mod gang;
#[cfg(test)]
mod gang_tests;
pub mod idea_update;
pub mod lease_waiters;
pub mod live_logs;
pub mod reattach;
#[cfg(test)]
mod reattach_tests;
pub mod recovery;
#[cfg(test)]
pub(crate) mod recovery_tests;
#[cfg(test)]
pub(crate) mod serialization_tests;
#[cfg(test)]
mod stage_finish_tests;
pub mod stages;
pub mod workers;

use crate::state::records::{JobRecord, Settings, WorkerRecord};
use crate::store::code_files::CodeFiles;
use crate::store::live_feed::{LiveEvent, LiveFeed, LoggedEvent};
use crate::store::metric_spool::MetricSpool;
use crate::store::research_log::ResearchLog;
use crate::store::results_file::{LineKey, LineRef, ResultsFile};
use crate::store::workspace::Workspace;
use expcluster_core::{JobId, Stage, WorkerId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Where events go: see [`CoordinatorState::events`].
pub struct Events<'a> {
    log: &'a mut ResearchLog,
    text_log: &'a crate::store::text_log::TextLog,
    idea_version: u32,
    live: &'a LiveFeed,
}

impl Events<'_> {
    /// Writes an event (any payload that serializes to a JSON object) to the research
    /// log and a line to `logs/experiment_log.txt`; returns its sequence number.
    pub fn record<P: serde::Serialize>(
        &mut self,
        event_type: &str,
        payload: &P,
    ) -> Result<u64, crate::error::CoordinatorError> {
        let written = self
            .log
            .append_event(event_type, self.idea_version, payload)
            .map_err(crate::error::CoordinatorError::storage)?;
        self.text_log.append(format_args!(
            "{} [v{}] {} {}\n",
            written.time, self.idea_version, event_type, written.payload
        ));
        self.live.publish(|| {
            LiveEvent::Logged(Arc::new(LoggedEvent {
                seq: written.seq,
                event_type: event_type.to_owned(),
                payload: written.payload.clone(),
            }))
        });
        Ok(written.seq)
    }
}

/// One submission of a stage.
#[derive(Debug)]
pub struct StageRun {
    pub id: u64,
    pub stage: Stage,
    pub jobs: Vec<JobId>,
    pub reused: HashSet<JobId>,
    pub idea_version: u32,
    pub finished: bool,
    /// Its results are being aggregated and written outside the state lock
    /// ([`crate::stage::aggregate::StageToFinish`]); `finished` turns true once they are recorded.
    pub finishing: bool,
    pub outputs: Vec<String>,
    pub primary_metric: String,
    /// Shared with every lease's spec, which is built outside the state lock.
    pub code: Arc<CodeFiles>,
    /// How many of `jobs`, from the start, are known to be in a final state: the
    /// "is the stage done?" check resumes there instead of rescanning every finished
    /// job on every completion (which made a 10,000-job stage quadratic).
    pub final_prefix: usize,
}

/// A job's last successful completion.
#[derive(Debug, Clone)]
pub struct Completed {
    pub fingerprint: String,
    /// Where its results line is; `None` while it is missing (recovery rebuilds it if
    /// it can, otherwise the job counts as failed when its stage is aggregated).
    pub line: Option<LineRef>,
}

pub struct CoordinatorState {
    pub workspace: Workspace,
    pub log: ResearchLog,
    /// The coordinator's own journal (`.expcluster/journal.jsonl`): what the research
    /// log does not say but a restart needs (job definitions, leases, workers).
    pub journal: ResearchLog,
    pub settings: Settings,
    pub idea_version: u32,
    pub jobs: HashMap<JobId, JobRecord>,
    /// The open metric spool of each running attempt that has reported points.
    pub spools: HashMap<JobId, MetricSpool>,
    pub queue: VecDeque<JobId>,
    pub workers: HashMap<WorkerId, WorkerRecord>,
    pub stage_runs: Vec<StageRun>,
    /// Job id → its last successful completion (rebuilt from the log).
    pub completed: HashMap<JobId, Completed>,
    /// `experiment_results/job_results.jsonl`, the series and final values of every
    /// succeeded attempt.
    pub results: ResultsFile,
    pub next_worker: u64,
    /// Worker ids retired by a restart of their worker on the same node, with the id
    /// that replaced each: a retried registration gets the first one's answer
    /// ([`crate::ops::reattach`]).
    pub retired_workers: HashMap<WorkerId, WorkerId>,
    /// `logs/experiment_log.txt`, written off the state mutex.
    pub text_log: crate::store::text_log::TextLog,
    /// A stage's results could not be written (e.g. a full disk): retry periodically.
    pub stage_finish_pending: bool,
    /// Where stages ready to finish go when a serving coordinator aggregates them in
    /// the background ([`crate::Coordinator::start_stage_finisher`]); `None`: at once.
    pub stage_finisher:
        Option<tokio::sync::mpsc::UnboundedSender<crate::stage::aggregate::StageToFinish>>,
    /// What happens, for live watchers such as the dashboard
    /// ([`crate::store::live_feed`]).
    pub live: LiveFeed,
    /// The research log's events that claims are judged with after later stages
    /// (`experiment_completed`, `hypothesis_evaluated`, `stage_seeds_added`): kept here
    /// because the log itself stops keeping events in memory once recovery has read
    /// them. A few kilobytes per claim and stage.
    pub claim_events: crate::stage::looks::ClaimEvents,
    /// Lease calls waiting for a job ([`crate::ops::lease_waiters`]).
    pub lease_waiters: lease_waiters::LeaseWaiters,
}

impl CoordinatorState {
    pub fn new(
        workspace: Workspace,
        log: ResearchLog,
        journal: ResearchLog,
        settings: Settings,
        (results, lines): (ResultsFile, Vec<(LineKey, LineRef)>),
    ) -> Self {
        let idea_version = crate::stage::idea::read_version(&workspace);
        let mut completed: HashMap<JobId, Completed> = HashMap::new();
        // The attempt each job's latest success was: only its line counts.
        let mut latest: HashMap<JobId, LineKey> = HashMap::new();
        for event in log.events() {
            let is_success = event["type"] == "job_completed" && event["status"] == "succeeded";
            if let (true, Some(id), Some(fingerprint)) = (
                is_success,
                event["job_id"].as_str(),
                event["fingerprint"].as_str(),
            ) {
                if let Ok(id) = JobId::parse(id) {
                    let done = Completed {
                        fingerprint: fingerprint.to_owned(),
                        line: None,
                    };
                    completed.insert(id.clone(), done);
                    match LineKey::of_event(event) {
                        Some(key) => latest.insert(id, key),
                        None => latest.remove(&id),
                    };
                }
            }
        }
        for (key, at) in lines {
            let Ok(id) = JobId::parse(&key.job_id) else {
                continue;
            };
            if latest.get(&id) == Some(&key) {
                if let Some(done) = completed.get_mut(&id) {
                    done.line = Some(at);
                }
            }
        }
        let text_log =
            crate::store::text_log::TextLog::new(workspace.logs_dir().join("experiment_log.txt"));
        let claim_events = log
            .events()
            .iter()
            .filter(|event| {
                event["type"]
                    .as_str()
                    .is_some_and(crate::stage::looks::is_claim_event)
            })
            .cloned()
            .collect();
        Self {
            claim_events,
            text_log,
            workspace,
            log,
            journal,
            settings,
            idea_version,
            jobs: HashMap::new(),
            spools: HashMap::new(),
            queue: VecDeque::new(),
            workers: HashMap::new(),
            stage_runs: Vec::new(),
            completed,
            results,
            next_worker: 1,
            retired_workers: HashMap::new(),
            stage_finish_pending: false,
            stage_finisher: None,
            live: LiveFeed::default(),
            lease_waiters: lease_waiters::LeaseWaiters::default(),
        }
    }

    /// Whether the job's last success ran this fingerprint (so it can be reused).
    pub fn completed_with(&self, job: &JobId, fingerprint: &str) -> bool {
        self.completed
            .get(job)
            .is_some_and(|done| done.fingerprint == fingerprint)
    }

    /// Writes an event to the research log and a line to `logs/experiment_log.txt`.
    pub fn log_event(
        &mut self,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<u64, crate::error::CoordinatorError> {
        let payload = match payload {
            serde_json::Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("payload".into(), other);
                map
            }
        };
        let mut events = self.events();
        let seq = events.record(event_type, &payload)?;
        if crate::stage::looks::is_claim_event(event_type) {
            let mut kept = payload;
            kept.insert("seq".into(), seq.into());
            kept.insert("type".into(), event_type.into());
            self.claim_events.push(serde_json::Value::Object(kept));
        }
        Ok(seq)
    }

    /// The research log and its text twin.
    pub fn events(&mut self) -> Events<'_> {
        self.jobs_and_events().1
    }

    /// The jobs and, borrowed apart from them, the research log: an event can then be
    /// serialized straight from the job record it describes.
    pub fn jobs_and_events(&mut self) -> (&HashMap<JobId, JobRecord>, Events<'_>) {
        let events = Events {
            log: &mut self.log,
            text_log: &self.text_log,
            idea_version: self.idea_version,
            live: &self.live,
        };
        (&self.jobs, events)
    }

    /// Appends a record to the coordinator's journal (durable when it returns).
    pub fn journal_record(
        &mut self,
        record_type: &str,
        payload: serde_json::Value,
    ) -> Result<(), crate::error::CoordinatorError> {
        let payload = match payload {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self.journal
            .append(record_type, self.idea_version, payload)
            .map(|_| ())
            .map_err(crate::error::CoordinatorError::storage)
    }

    pub fn job(&self, id: &JobId) -> Result<&JobRecord, crate::error::CoordinatorError> {
        self.jobs
            .get(id)
            .ok_or_else(|| crate::error::CoordinatorError::UnknownJob(id.to_string()))
    }

    /// Moves job `id` through the lifecycle (`lifecycle.rs`) by `event`.
    pub fn apply_event(
        &mut self,
        id: &JobId,
        event: crate::state::lifecycle::JobEvent,
    ) -> Result<&mut JobRecord, crate::error::CoordinatorError> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| crate::error::CoordinatorError::UnknownJob(id.to_string()))?;
        job.state = job
            .state
            .apply(event)
            .map_err(|err| crate::error::CoordinatorError::InvalidRequest(err.to_string()))?;
        Ok(job)
    }
}
