//! The coordinator's mutable state and the operations on it.
//!
//! One owner: [`crate::Coordinator`] keeps this behind a std mutex that is never held
//! across an `.await`. Every method takes `now` so the lease logic is testable without
//! sleeping. Workspace writes happen inside these methods, so an operation is only
//! acknowledged once what it changed is durable.

use crate::code_files::CodeFiles;
use crate::lifecycle::JobState;
use crate::research_log::ResearchLog;
use crate::results_file::{LineKey, LineRef, ResultsFile};
use crate::workspace::Workspace;
use expcluster_core::{AttemptNumber, JobDefinition, JobId, Stage, WorkerId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timing knobs (RELIABILITY.md defaults: heartbeat 1 s, lease 5 s).
#[derive(Debug, Clone)]
pub struct Settings {
    pub heartbeat_interval: Duration,
    pub lease_timeout: Duration,
    /// After a restart, how long workers get to reattach before any is declared lost
    /// (added to the lease of every attempt that was running).
    pub restart_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            lease_timeout: Duration::from_secs(5),
            restart_grace: Duration::from_secs(2),
        }
    }
}

/// Where events go: see [`CoordinatorState::events`].
pub struct Events<'a> {
    log: &'a mut ResearchLog,
    text_log: &'a crate::text_log::TextLog,
    idea_version: u32,
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
        Ok(written.seq)
    }
}

/// What the coordinator knows about one job.
#[derive(Debug)]
pub struct JobRecord {
    /// Shared (never changed once queued): a lease's spec and a stage's aggregation
    /// take it without copying it under the state lock.
    pub def: Arc<JobDefinition>,
    pub state: JobState,
    /// Attempts started so far (the current or last attempt's number).
    pub attempts: AttemptNumber,
    /// Failed attempts (the retry budget); interruptions do not count.
    pub failures: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub stage_run: u64,
    /// The current attempt's metric series, by name, indexed by step.
    pub series: BTreeMap<String, Vec<f64>>,
    /// Next expected metric sequence number of the current attempt.
    pub next_seq: u64,
    pub spool: Option<File>,
    pub spool_guard: crate::durable::AppendGuard,
    /// Result files stored for the current attempt (names in the job's results dir).
    pub artifacts: Vec<String>,
    pub error: String,
    pub stderr_tail: String,
    pub duration_s: f64,
    /// Exit code of the last reported attempt.
    pub exit_code: i32,
    /// Answers given to completions, so a replayed completion gets the same answer.
    pub completions: HashMap<AttemptNumber, (crate::completion::CompletionKey, bool)>,
    /// Slots the job needs at once: `resources.data_parallel` (1 for most jobs).
    pub ranks: u32,
    /// Where the ranks of the latest attempt of a data-parallel job were placed.
    pub gang: Option<crate::gang::Gang>,
}

impl JobRecord {
    pub fn new(def: JobDefinition, max_attempts: u32, timeout: Duration, stage_run: u64) -> Self {
        Self {
            def: Arc::new(def),
            state: JobState::Queued { not_before: None },
            attempts: 0,
            failures: 0,
            max_attempts,
            timeout,
            stage_run,
            series: BTreeMap::new(),
            next_seq: 0,
            spool: None,
            spool_guard: crate::durable::AppendGuard::default(),
            artifacts: Vec::new(),
            error: String::new(),
            stderr_tail: String::new(),
            duration_s: 0.0,
            exit_code: 0,
            completions: HashMap::new(),
            ranks: 1,
            gang: None,
        }
    }

    /// A data-parallel job of `ranks` ranks (1: an ordinary job).
    pub fn with_ranks(mut self, ranks: u32) -> Self {
        self.ranks = ranks.max(1);
        self
    }

    /// Stores one point of a metric series at its step. A gap is filled with NaN; a
    /// step already stored keeps its first value, so resends and replays are
    /// deterministic.
    pub fn record_point(&mut self, name: &str, step: u64, value: f64) {
        // Looked up first: the name is only copied for a new series, not per point.
        if !self.series.contains_key(name) {
            self.series.insert(name.to_owned(), Vec::new());
        }
        let Some(series) = self.series.get_mut(name) else {
            return;
        };
        let step = step as usize;
        if step >= series.len() {
            series.resize(step, f64::NAN);
            series.push(value);
        }
    }

    /// The last value of every metric series.
    pub fn final_metrics(&self) -> BTreeMap<String, f64> {
        self.series
            .iter()
            .filter_map(|(name, values)| values.last().map(|last| (name.clone(), *last)))
            .collect()
    }
}

#[derive(Debug)]
pub struct WorkerRecord {
    pub hostname: String,
    pub slots: u32,
    pub last_seen: Instant,
    /// Jobs running here, with the slots each holds (several for ranks of a gang).
    pub running: HashMap<JobId, u32>,
    /// Gang ranks placed here by another worker's lease call, handed out with this
    /// worker's next lease.
    pub pending: Vec<crate::workers::Lease>,
}

impl WorkerRecord {
    pub fn new(hostname: &str, slots: u32, now: Instant) -> Self {
        Self {
            hostname: hostname.to_owned(),
            slots,
            last_seen: now,
            running: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Slots the coordinator has not handed out (pending ranks count as taken).
    pub fn free_slots(&self) -> u32 {
        self.slots
            .saturating_sub(self.running.values().sum::<u32>())
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
    /// ([`crate::stages::StageToFinish`]); `finished` turns true once they are recorded.
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
    /// ([`crate::reattach`]).
    pub retired_workers: HashMap<WorkerId, WorkerId>,
    /// `logs/experiment_log.txt`, written off the state mutex.
    pub text_log: crate::text_log::TextLog,
    /// A stage's results could not be written (e.g. a full disk): retry periodically.
    pub stage_finish_pending: bool,
    /// Where stages ready to finish go when a serving coordinator aggregates them in
    /// the background ([`crate::Coordinator::start_stage_finisher`]); `None`: at once.
    pub stage_finisher: Option<tokio::sync::mpsc::UnboundedSender<crate::stages::StageToFinish>>,
}

impl CoordinatorState {
    pub fn new(
        workspace: Workspace,
        log: ResearchLog,
        journal: ResearchLog,
        settings: Settings,
        (results, lines): (ResultsFile, Vec<(LineKey, LineRef)>),
    ) -> Self {
        let idea_version = crate::idea::read_version(&workspace);
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
            crate::text_log::TextLog::new(workspace.logs_dir().join("experiment_log.txt"));
        Self {
            text_log,
            workspace,
            log,
            journal,
            settings,
            idea_version,
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            workers: HashMap::new(),
            stage_runs: Vec::new(),
            completed,
            results,
            next_worker: 1,
            retired_workers: HashMap::new(),
            stage_finish_pending: false,
            stage_finisher: None,
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
        events.record(event_type, &payload)
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
        event: crate::lifecycle::JobEvent,
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
