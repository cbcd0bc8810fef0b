//! The coordinator as the service sees it: the state behind its mutex, handing
//! queued jobs to waiting lease calls, and the background tasks (stage finisher, lease
//! reaper) that take the lock on their own.

use crate::error::CoordinatorError;
use crate::ops::stages::{ConfigCache, PreparedStage, Submitted};
use crate::ops::CoordinatorState;
use crate::state::records::Settings;
use crate::store::research_log::ResearchLog;
use crate::store::workspace::Workspace;
use expcluster_core::Stage;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The coordinator: its state and what is read without its lock.
pub struct Coordinator {
    state: Mutex<CoordinatorState>,
    /// The workspace's paths, read without the lock (a submission reads its files
    /// before taking it).
    workspace: Workspace,
    configs: ConfigCache,
    /// Keeps `expcluster idea`/`summarize` (and a second coordinator) off the workspace.
    _lock: crate::store::workspace_lock::WorkspaceLock,
}

impl Coordinator {
    /// Opens the workspace (recovering the research log) and builds the state.
    pub fn open(
        root: &Path,
        settings: Settings,
        repair: bool,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let workspace = Workspace::open(root).map_err(CoordinatorError::storage)?;
        let lock = crate::store::workspace_lock::acquire(workspace.root(), "a coordinator")
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
        let results = crate::store::results_file::ResultsFile::open(&workspace.job_results_path())
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
            workspace: state.workspace.clone(),
            configs: ConfigCache::default(),
            state: Mutex::new(state),
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

    /// Submits a stage: its files are read and its jobs expanded before the state
    /// lock is taken (see [`PreparedStage`]), then queued under it and handed to
    /// waiting lease calls in the same lock.
    pub fn submit_stage(&self, stage: Stage, rerun: bool) -> Result<Submitted, CoordinatorError> {
        let prepared = PreparedStage::read(&self.workspace, &self.configs, stage);
        // The stage record, `stage_started` and the first leases go in one round.
        let _one_round = crate::store::group_commit::wake_later();
        let mut state = self.lock();
        let submitted = state.submit_prepared(stage, rerun, prepared)?;
        state.hand_to_waiting(std::time::Instant::now());
        drop(state);
        Ok(submitted)
    }

    /// Hands queued jobs to waiting lease calls
    /// ([`CoordinatorState::hand_to_waiting`]): after anything that may have made a
    /// job startable outside [`Self::submit_stage`].
    pub fn hand_out_queued(&self) {
        self.lock().hand_to_waiting(std::time::Instant::now());
    }

    /// Starts the task that aggregates finished stages outside the state lock, and
    /// hands it every stage finished from now on
    /// ([`CoordinatorState::stage_finisher`]). The task ends once that sender
    /// is taken out of the state again.
    pub fn start_stage_finisher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (sender, mut ready) =
            tokio::sync::mpsc::unbounded_channel::<crate::stage::aggregate::StageToFinish>();
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
    ///
    /// A pass that comes late means nothing could hear the workers meanwhile (the
    /// state was held by a write stuck on a stalled disk, or the process was
    /// stopped): that time is given back to every lease before any is judged.
    pub async fn run_lease_reaper(self: Arc<Self>, period: std::time::Duration) {
        let mut ticker = tokio::time::interval(period);
        // After a late pass, the next comes a period later, not in a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous_pass = std::time::Instant::now();
        loop {
            ticker.tick().await;
            let requeued = {
                let mut state = self.lock();
                let now = std::time::Instant::now();
                let deaf = now.duration_since(previous_pass).saturating_sub(period);
                previous_pass = now;
                if deaf > period {
                    tracing::warn!(
                        deaf_ms = deaf.as_millis(),
                        "this coordinator could not serve workers for a while (a stalled disk, or a stopped process); their leases get that time back"
                    );
                    state.excuse_deaf_period(deaf, now);
                }
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
                    self.hand_out_queued();
                }
                Err(err) => tracing::error!(%err, "cannot requeue the jobs of lost workers"),
            }
        }
    }
}
