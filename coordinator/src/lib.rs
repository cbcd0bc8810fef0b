//! The expcluster coordinator: the only writer of an experiment's workspace.
//!
//! It expands stages into jobs, leases them to workers over gRPC, stores every metric
//! point and result file exactly once, and writes the research log, the result arrays
//! and the stage summaries. All mutable state sits in one [`state::CoordinatorState`]
//! behind a std mutex held only for synchronous work (never across an `.await`); the
//! gRPC handlers in [`service`] convert, call one method, and convert back.

pub mod auth;
pub mod auth_layer;
pub mod claims;
pub mod code_files;
pub mod commit_layer;
pub mod completion;
pub mod durable;
pub mod error;
pub mod feedback;
pub mod gang;
#[cfg(test)]
mod gang_tests;
pub mod group_commit;
pub mod idea;
pub mod idea_update;
pub mod job_metrics;
pub mod lifecycle;
pub mod live_logs;
pub mod metric_batch;
pub mod reattach;
#[cfg(test)]
mod reattach_tests;
pub mod recovery;
#[cfg(test)]
mod recovery_tests;
pub mod research_log;
pub mod results;
pub mod results_file;
pub mod scheduler;
#[cfg(test)]
mod serialization_tests;
pub mod server;
pub mod service;
#[cfg(test)]
mod stage_finish_tests;
pub mod stages;
pub mod state;
pub mod summary;
pub mod text_log;
pub mod tls;
pub mod workers;
pub mod workspace;
pub mod workspace_lock;

use crate::error::CoordinatorError;
use crate::research_log::ResearchLog;
use crate::state::{CoordinatorState, Settings};
use crate::workspace::Workspace;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The coordinator: its state plus the signals that wake waiting RPCs.
pub struct Coordinator {
    state: Mutex<CoordinatorState>,
    /// Woken when jobs are queued (lease long-polls wait on it).
    pub jobs_queued: Notify,
    /// Keeps `expcluster idea`/`summarize` (and a second coordinator) off the workspace.
    _lock: workspace_lock::WorkspaceLock,
}

impl Coordinator {
    /// Opens the workspace (recovering the research log) and builds the state.
    pub fn open(
        root: &Path,
        settings: Settings,
        repair: bool,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let workspace = Workspace::open(root).map_err(CoordinatorError::storage)?;
        let lock = workspace_lock::acquire(workspace.root(), "a coordinator")
            .map_err(|err| CoordinatorError::Conflict(err.to_string()))?;
        let (log, recovery) = ResearchLog::open(&workspace.research_log_path(), repair)
            .map_err(CoordinatorError::storage)?;
        if let Some(saved) = &recovery.torn_tail_saved_to {
            tracing::warn!(saved = %saved.display(), "the research log had a torn last line; it was saved aside");
        }
        let (mut journal, _) =
            ResearchLog::open(&workspace.state_dir().join("journal.jsonl"), repair)
                .map_err(CoordinatorError::storage)?;
        journal.write_as_journal();
        let results = results_file::ResultsFile::open(&workspace.job_results_path())
            .map_err(CoordinatorError::storage)?;
        let mut state = CoordinatorState::new(workspace, log, journal, settings, results);
        let recovered = state.recover(std::time::Instant::now())?;
        // The journal and the research log are read only by the recovery above: events
        // kept in memory would grow by a few hundred bytes with every job forever.
        state.journal.release_events();
        state.log.release_events();
        if recovered.stage_runs > 0 {
            tracing::warn!(?recovered, "resuming from the journal");
        }
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            jobs_queued: Notify::new(),
            _lock: lock,
        }))
    }

    /// Locks the state. A poisoned lock (a panic mid-update) is taken over: every
    /// update is durable before it is applied in memory, so the state stays usable.
    pub fn lock(&self) -> MutexGuard<'_, CoordinatorState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the task that aggregates finished stages outside the state lock, and
    /// hands it every stage finished from now on
    /// ([`state::CoordinatorState::stage_finisher`]). The task ends once that sender
    /// is taken out of the state again.
    pub fn start_stage_finisher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (sender, mut ready) = tokio::sync::mpsc::unbounded_channel::<stages::StageToFinish>();
        self.lock().stage_finisher = Some(sender);
        let coordinator = self.clone();
        tokio::spawn(async move {
            while let Some(stage) = ready.recv().await {
                let run_id = stage.run_id;
                // Reading every results line and writing files: a blocking thread.
                let aggregated = tokio::task::spawn_blocking(move || stage.aggregate())
                    .await
                    .unwrap_or_else(|panicked| {
                        Err(CoordinatorError::Storage(format!(
                            "aggregating the stage failed: {panicked}"
                        )))
                    });
                if let Err(err) = coordinator.lock().finish_aggregated(run_id, aggregated) {
                    tracing::error!(%err, "cannot finish the stage yet; will retry");
                }
            }
        })
    }

    /// Requeues the jobs of workers whose leases ran out, every `period`, forever.
    pub async fn run_lease_reaper(self: Arc<Self>, period: std::time::Duration) {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            let requeued = {
                let mut state = self.lock();
                if state.stage_finish_pending {
                    state.stage_finish_pending = false;
                    if let Err(err) = state.finish_stages_if_done() {
                        tracing::error!(%err, "cannot finish the stage yet; will retry");
                        state.stage_finish_pending = true;
                    }
                }
                state.expire_leases(std::time::Instant::now())
            };
            match requeued {
                Ok(0) => {}
                Ok(count) => {
                    tracing::warn!(count, "requeued jobs of lost workers");
                    self.jobs_queued.notify_waiters();
                }
                Err(err) => tracing::error!(%err, "cannot requeue the jobs of lost workers"),
            }
        }
    }
}
