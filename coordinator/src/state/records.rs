//! What the coordinator knows about each job and worker, and its timing settings.
//! Plain data: the records change only through [`crate::ops::lifecycle`]'s
//! transitions and the operations in [`crate::ops`], with time passed in.

use crate::state::gang::Gang;
use crate::state::lifecycle::JobState;
use crate::state::reports::{CompletionKey, Lease};
use expcluster_core::{AttemptNumber, JobDefinition, JobId};
use std::collections::{BTreeMap, HashMap};
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
    /// Hold a session's lease answers until the lease's journal record is durable (the
    /// behaviour before leases were answered at once, kept to measure against; see
    /// `crate::service::session`).
    pub leases_wait_for_commit: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            lease_timeout: Duration::from_secs(5),
            restart_grace: Duration::from_secs(2),
            leases_wait_for_commit: false,
        }
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
    /// Result files stored for the current attempt (names in the job's results dir).
    pub artifacts: Vec<String>,
    pub error: String,
    pub stderr_tail: String,
    pub duration_s: f64,
    /// Exit code of the last reported attempt.
    pub exit_code: i32,
    /// Answers given to completions, so a replayed completion gets the same answer.
    pub completions: HashMap<AttemptNumber, (CompletionKey, bool)>,
    /// Slots the job needs at once: `resources.data_parallel` (1 for most jobs).
    pub ranks: u32,
    /// Where the ranks of the latest attempt of a data-parallel job were placed.
    pub gang: Option<Gang>,
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
    pub pending: Vec<Lease>,
    /// The GPUs it announced at registration (shown by the dashboard; not journaled,
    /// so empty for a worker known only from before a restart).
    pub gpus: Vec<String>,
}

impl WorkerRecord {
    pub fn new(hostname: &str, slots: u32, now: Instant) -> Self {
        Self {
            hostname: hostname.to_owned(),
            slots,
            last_seen: now,
            running: HashMap::new(),
            pending: Vec::new(),
            gpus: Vec::new(),
        }
    }

    /// Slots the coordinator has not handed out (pending ranks count as taken).
    pub fn free_slots(&self) -> u32 {
        self.slots
            .saturating_sub(self.running.values().sum::<u32>())
    }
}
