//! Stage runs: submitting a stage (expansion, reuse of completed jobs), its status,
//! and finishing it (result arrays, summary, log events) once every job is terminal.

use crate::error::CoordinatorError;
use crate::ops::{CoordinatorState, StageRun};
use crate::stage::aggregate::{AggregatedStage, JobToAggregate, StageToFinish};
use crate::stage::looks::{check_first_look, plan_second_look, stage_look, SEEDS_ADDED_EVENT};
use crate::state::lifecycle::{JobEvent, JobState};
use crate::state::records::JobRecord;
use crate::store::code_files::{read_code_files, CodeFiles};
use crate::store::workspace::Workspace;
use expcluster_core::config::LoadedConfig;
use expcluster_core::config_limits::read_config_text;
use expcluster_core::expand::{expand_stage, StageRequest};
use expcluster_core::{ExperimentConfig, JobDefinition, JobId, Stage};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// The journal's `stage` record: what recovery needs to rebuild a stage run and its
/// jobs. Fields in the order the record has always had (recovery reads it by name).
#[derive(Serialize)]
struct StageRecord<'a> {
    stage_run: u64,
    stage: Stage,
    jobs: &'a [JobDefinition],
    reused: Vec<&'a JobId>,
    primary_metric: &'a str,
    code_digest: &'a str,
    max_attempts: u32,
    data_parallel: u32,
    timeout_ms: u64,
}

/// The answer to a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub stage_run: u64,
    pub jobs_total: usize,
    pub jobs_reused: usize,
    /// True when the stage was already running and the caller attached to it.
    pub attached: bool,
    /// What the submission did beyond the config, for the researcher (a second look).
    pub note: String,
}

/// What a submission reads from the workspace: the config, the code files, the
/// idea's version and the stage's jobs. None of it needs the
/// state, so a serving coordinator reads it before taking the state lock: a lease
/// waiting for the stage's jobs waits for the lock only while they are queued.
pub struct PreparedStage {
    loaded: Arc<LoadedConfig>,
    code: CodeFiles,
    idea_version: u32,
    definitions: Vec<JobDefinition>,
}

/// Stages of at most this many jobs keep their expansion in the [`ConfigCache`];
/// a larger one would hold a second copy of its definitions, and its expansion is
/// small beside its dispatch.
const CACHED_STAGE_JOBS: usize = 1000;

/// The config last parsed, reused while `config.yaml`'s text stays the same, and
/// the stages last expanded from it: parsing and validating the config was most of
/// what a submission reads (about 0.14 ms of 0.2 on this machine), expanding a
/// stage's jobs (their fingerprints) the next part, and both sit between a submit
/// and the start of its first job.
#[derive(Debug, Default)]
pub struct ConfigCache(std::sync::Mutex<Option<CachedConfig>>);

#[derive(Debug)]
struct CachedConfig {
    loaded: Arc<LoadedConfig>,
    /// (stage, code digest, its jobs): one entry per stage, for the latest code.
    stages: Vec<(Stage, String, Vec<JobDefinition>)>,
}

impl ConfigCache {
    /// The workspace's config, parsed again only when its text changed.
    pub fn load(&self, path: &std::path::Path) -> Result<Arc<LoadedConfig>, CoordinatorError> {
        let config_error =
            |err: expcluster_core::ConfigError| CoordinatorError::Config(err.to_string());
        let text = read_config_text(path).map_err(config_error)?;
        let mut cached = self.lock();
        if let Some(hit) = cached
            .as_ref()
            .filter(|c| c.loaded.text == text && c.loaded.path == path)
        {
            return Ok(hit.loaded.clone());
        }
        let loaded = Arc::new(ExperimentConfig::parse(&text, path).map_err(config_error)?);
        *cached = Some(CachedConfig {
            loaded: loaded.clone(),
            stages: Vec::new(),
        });
        Ok(loaded)
    }

    /// `stage`'s jobs for `code_digest`, expanded from `loaded` (what [`Self::load`]
    /// returned), or copied from the last expansion of the same config and code.
    pub fn expand(
        &self,
        loaded: &Arc<LoadedConfig>,
        stage: Stage,
        code_digest: &str,
    ) -> Result<Vec<JobDefinition>, CoordinatorError> {
        let same_config = |c: &&mut CachedConfig| Arc::ptr_eq(&c.loaded, loaded);
        if let Some(cached) = self.lock().as_mut().filter(same_config) {
            if let Some((_, _, definitions)) = cached
                .stages
                .iter()
                .find(|(s, digest, _)| *s == stage && digest == code_digest)
            {
                return Ok(definitions.clone());
            }
        }
        let definitions = expand_stage(loaded, StageRequest { stage, code_digest })
            .map_err(|err| CoordinatorError::Config(err.to_string()))?;
        if definitions.len() <= CACHED_STAGE_JOBS {
            if let Some(cached) = self.lock().as_mut().filter(same_config) {
                cached.stages.retain(|(s, _, _)| *s != stage);
                cached
                    .stages
                    .push((stage, code_digest.to_owned(), definitions.clone()));
            }
        }
        Ok(definitions)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CachedConfig>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PreparedStage {
    /// Reads what submitting `stage` needs from `workspace`.
    pub fn read(
        workspace: &Workspace,
        configs: &ConfigCache,
        stage: Stage,
    ) -> Result<Self, CoordinatorError> {
        let loaded = configs.load(&workspace.config_path())?;
        let code = read_code_files(workspace.root())?;
        let idea_version = crate::stage::idea::read_version(workspace);
        let definitions = configs.expand(&loaded, stage, &code.digest)?;
        Ok(Self {
            loaded,
            code,
            idea_version,
            definitions,
        })
    }
}

impl CoordinatorState {
    pub fn load_config(&self) -> Result<LoadedConfig, CoordinatorError> {
        ExperimentConfig::load(&self.workspace.config_path())
            .map_err(|err| CoordinatorError::Config(err.to_string()))
    }

    /// Expands and queues a stage. Jobs whose last success has the same fingerprint
    /// are reused unless `rerun` is set.
    pub fn submit_stage(
        &mut self,
        stage: Stage,
        rerun: bool,
    ) -> Result<Submitted, CoordinatorError> {
        let prepared = PreparedStage::read(&self.workspace, &ConfigCache::default(), stage);
        self.submit_prepared(stage, rerun, prepared)
    }

    /// [`Self::submit_stage`] with the workspace already read
    /// ([`PreparedStage::read`], done before the state lock by
    /// `Coordinator::submit_stage`). A read error is only reported if the stage is
    /// not running already.
    pub fn submit_prepared(
        &mut self,
        stage: Stage,
        rerun: bool,
        prepared: Result<PreparedStage, CoordinatorError>,
    ) -> Result<Submitted, CoordinatorError> {
        // A stage still running (for example one a restarted coordinator resumed) is
        // attached to, not submitted twice.
        if let Some(active) = self
            .stage_runs
            .iter()
            .find(|run| run.stage == stage && !run.finished)
        {
            return Ok(Submitted {
                stage_run: active.id,
                jobs_total: active.jobs.len(),
                jobs_reused: active.reused.len(),
                attached: true,
                note: String::new(),
            });
        }
        let PreparedStage {
            loaded,
            code,
            idea_version,
            mut definitions,
        } = prepared?;
        self.idea_version = idea_version;
        // A stage with a two-look design runs the seeds of the look it is at.
        let look = stage_look(&loaded, stage, self.claim_events.seeds_added());
        check_first_look(look, stage, self.claim_events.all())
            .map_err(CoordinatorError::InvalidRequest)?;
        let loaded = match look {
            Some(look) if look.look == 2 => {
                // A second look's seeds are known only here, under the lock: expanded
                // again (rare, so the common submission keeps expanding before it).
                let extended = loaded.with_stage_seeds(stage, look.seeds());
                definitions = expand_stage(
                    &extended,
                    StageRequest {
                        stage,
                        code_digest: &code.digest,
                    },
                )
                .map_err(|err| CoordinatorError::Config(err.to_string()))?;
                Arc::new(extended)
            }
            _ => loaded,
        };
        // Under the lock: two submissions of new code must not both see its
        // snapshot directory half written.
        crate::ops::recovery::snapshot_code(&self.workspace, &code)
            .map_err(CoordinatorError::storage)?;
        let run_id = self.stage_runs.iter().map(|run| run.id).max().unwrap_or(0) + 1;
        let resources = &loaded.config.resources;
        let reused_ids: Vec<&JobId> = definitions
            .iter()
            .filter(|def| !rerun && self.completed_with(&def.id, &def.fingerprint))
            .map(|def| &def.id)
            .collect();
        // Serialized straight into the journal line: no `Value` copy of every
        // definition (that copy, not the jobs, was most of a large submission's peak).
        let record = StageRecord {
            stage_run: run_id,
            stage,
            jobs: &definitions,
            reused: reused_ids,
            primary_metric: &loaded.config.primary_metric.name,
            code_digest: &code.digest,
            max_attempts: resources.max_attempts,
            data_parallel: resources.data_parallel,
            timeout_ms: resources.timeout().as_millis() as u64,
        };
        self.journal
            .append_serialized("stage", self.idea_version, &record)
            .map_err(CoordinatorError::storage)?;
        // Sized up front: growing the jobs map by doubling holds the old and the new
        // table at once, a transient peak of 1.5x the map.
        self.jobs.reserve(definitions.len());
        self.queue.reserve(definitions.len());
        let mut reused = HashSet::new();
        let mut job_ids = Vec::with_capacity(definitions.len());
        for def in definitions {
            let id = def.id.clone();
            job_ids.push(id.clone());
            let already_done = self.completed_with(&id, &def.fingerprint);
            if already_done && !rerun {
                reused.insert(id.clone());
                let mut record =
                    JobRecord::new(def, resources.max_attempts, resources.timeout(), run_id)
                        .with_ranks(resources.data_parallel);
                record.state = JobState::Succeeded { attempt: 0 };
                self.jobs.insert(id, record);
                continue;
            }
            if let Some(existing) = self.jobs.get(&id) {
                if matches!(existing.state, JobState::Running { .. }) {
                    return Err(CoordinatorError::Conflict(format!(
                        "job {id} is still running"
                    )));
                }
            }
            self.jobs.insert(
                id.clone(),
                JobRecord::new(def, resources.max_attempts, resources.timeout(), run_id)
                    .with_ranks(resources.data_parallel),
            );
            self.queue.push_back(id);
        }
        let total = job_ids.len();
        let jobs_reused = reused.len();
        let mut started = json!({
            "stage": stage,
            "stage_run": run_id,
            "jobs_total": total,
            "jobs_reused": jobs_reused,
            "code_digest": code.digest,
            "config": loaded.config.name,
        });
        if let (Some(look), Value::Object(map)) = (look, &mut started) {
            // `expcluster summarize` expands the run again from these.
            map.insert("look".into(), look.look.into());
            map.insert("seeds".into(), look.seeds().into());
        }
        self.log_event("stage_started", started)?;
        self.stage_runs.push(StageRun {
            id: run_id,
            stage,
            jobs: job_ids,
            reused,
            idea_version: self.idea_version,
            finished: false,
            outputs: Vec::new(),
            primary_metric: loaded.config.primary_metric.name.clone(),
            code: Arc::new(code),
            final_prefix: 0,
            finishing: false,
        });
        self.finish_stages_if_done()?;
        Ok(Submitted {
            stage_run: run_id,
            jobs_total: total,
            jobs_reused,
            attached: false,
            note: String::new(),
        })
    }

    /// Opens the second look of a stage's declared two-look design
    /// (`expcluster submit --seeds-for-power`): checks it may
    /// ([`crate::stage::looks::plan_second_look`]), records `stage_seeds_added`, and
    /// submits the stage on its `max_seeds` (the seeds it already ran are reused).
    pub fn submit_second_look(&mut self, stage: Stage) -> Result<Submitted, CoordinatorError> {
        if self
            .stage_runs
            .iter()
            .any(|run| run.stage == stage && !run.finished)
        {
            return Err(CoordinatorError::Conflict(format!(
                "stage {stage} is running: its first look is not judged yet; wait for it (`expcluster watch --stage {stage}`)"
            )));
        }
        let loaded = self.load_config()?;
        let second = plan_second_look(&loaded, stage, self.claim_events.all())
            .map_err(CoordinatorError::InvalidRequest)?;
        self.log_event(SEEDS_ADDED_EVENT, second.payload)?;
        let mut submitted = self.submit_stage(stage, false)?;
        submitted.note = second.note;
        Ok(submitted)
    }

    /// Finishes every stage run whose jobs are all terminal: at once, or, in a serving
    /// coordinator, by handing it to the stage finisher, which aggregates it without
    /// the state lock (a 10,000-job stage took the lock for about 100 ms, stalling
    /// every lease and completion meanwhile).
    pub fn finish_stages_if_done(&mut self) -> Result<(), CoordinatorError> {
        let jobs = &self.jobs;
        let mut ready = Vec::new();
        for (index, run) in self.stage_runs.iter_mut().enumerate() {
            if run.finished || run.finishing {
                continue;
            }
            // A final state is final: the prefix only grows.
            run.final_prefix += run.jobs[run.final_prefix..]
                .iter()
                .take_while(|id| jobs.get(*id).is_some_and(|job| job.state.is_terminal()))
                .count();
            if run.final_prefix == run.jobs.len() {
                ready.push(index);
            }
        }
        for index in ready {
            let stage = self.stage_to_finish(index)?;
            let stage = match &self.stage_finisher {
                Some(finisher) => match finisher.send(stage) {
                    Ok(()) => continue,
                    // The finisher stopped (the server shut down): finish here.
                    Err(unsent) => unsent.0,
                },
                None => stage,
            };
            let run_id = stage.run_id;
            self.finish_aggregated(run_id, stage.aggregate())?;
        }
        Ok(())
    }

    /// Records the aggregation of stage run `run_id`, or, if it or the recording
    /// failed (a full disk, say), leaves the run unfinished for the reaper to hand
    /// over again.
    pub fn finish_aggregated(
        &mut self,
        run_id: u64,
        aggregated: Result<AggregatedStage, CoordinatorError>,
    ) -> Result<(), CoordinatorError> {
        let recorded = aggregated.and_then(|aggregated| self.record_finished_stage(aggregated));
        if recorded.is_err() {
            self.stage_not_finished(run_id);
        }
        recorded
    }

    /// Takes what aggregating the stage run at `index` needs, and marks it finishing.
    fn stage_to_finish(&mut self, index: usize) -> Result<StageToFinish, CoordinatorError> {
        let results = self.results.reader().map_err(CoordinatorError::storage)?;
        let run = &self.stage_runs[index];
        let mut jobs = Vec::with_capacity(run.jobs.len());
        for id in &run.jobs {
            let job = self.job(id)?;
            jobs.push(JobToAggregate {
                def: Arc::clone(&job.def),
                succeeded: matches!(job.state, JobState::Succeeded { .. }),
                error: job.error.clone(),
                line: self.completed.get(id).and_then(|done| done.line),
            });
        }
        let stage = StageToFinish {
            run_id: run.id,
            stage: run.stage,
            workspace: self.workspace.clone(),
            results,
            jobs,
        };
        self.stage_runs[index].finishing = true;
        Ok(stage)
    }

    /// Records an aggregated stage run: the `experiment_completed` event, its outputs,
    /// then its claims and the idea feedback.
    fn record_finished_stage(
        &mut self,
        aggregated: AggregatedStage,
    ) -> Result<(), CoordinatorError> {
        let AggregatedStage {
            run_id,
            stage,
            loaded,
            outcomes,
            outputs,
            figures,
        } = aggregated;
        let Some(index) = self.stage_runs.iter().position(|run| run.id == run_id) else {
            return Err(CoordinatorError::InvalidRequest(format!(
                "stage run {run_id} is unknown"
            )));
        };
        let succeeded = outcomes.iter().filter(|o| o.succeeded).count();
        let failed = outcomes.len() - succeeded;
        let run = &self.stage_runs[index];
        let payload = json!({
            "stage": stage,
            "stage_run": run.id,
            "jobs_total": outcomes.len(),
            "jobs_succeeded": succeeded,
            "jobs_failed": failed,
            "jobs_reused": run.reused.len(),
            "outputs": outputs,
        });
        let completed_seq = self.log_event("experiment_completed", payload)?;
        let run = &mut self.stage_runs[index];
        run.finished = true;
        run.finishing = false;
        run.outputs = outputs;
        run.outputs.extend(figures);
        tracing::info!(%stage, succeeded, failed, "stage finished");
        // Claims, then the idea feedback protocol (may bump the idea version).
        self.evaluate_claims(&loaded, stage, run_id, &outcomes, completed_seq)
    }

    /// A stage run could not be finished (a full disk, say): the reaper tries again.
    fn stage_not_finished(&mut self, run_id: u64) {
        if let Some(run) = self.stage_runs.iter_mut().find(|run| run.id == run_id) {
            if !run.finished {
                run.finishing = false;
                self.stage_finish_pending = true;
            }
        }
    }

    /// The latest run of a stage.
    pub fn latest_run(&self, stage: Stage) -> Option<&StageRun> {
        self.stage_runs.iter().rev().find(|run| run.stage == stage)
    }

    /// Cancels the queued and running jobs of a stage, or one job.
    pub fn cancel(
        &mut self,
        stage: Option<Stage>,
        job: Option<&JobId>,
    ) -> Result<usize, CoordinatorError> {
        let targets: Vec<JobId> = match (stage, job) {
            (_, Some(id)) => vec![id.clone()],
            (Some(stage), None) => self
                .latest_run(stage)
                .map(|run| run.jobs.clone())
                .unwrap_or_default(),
            (None, None) => {
                return Err(CoordinatorError::InvalidRequest(
                    "name a stage or a job to cancel".into(),
                ))
            }
        };
        let mut cancelled = 0;
        for id in targets {
            let record = self.job(&id)?;
            if record.state.is_terminal() {
                continue;
            }
            let stage_run = record.stage_run;
            // Durable first: the cancel is recorded before anything acts on it.
            self.log_event(
                "job_cancelled",
                json!({"job_id": id, "stage_run": stage_run}),
            )?;
            self.release_slots(&id, None);
            let Some(record) = self.jobs.get_mut(&id) else {
                return Err(CoordinatorError::UnknownJob(id.to_string()));
            };
            record.state = record
                .state
                .apply(JobEvent::Cancel)
                .map_err(|err| CoordinatorError::InvalidRequest(err.to_string()))?;
            cancelled += 1;
        }
        self.queue.retain(|id| {
            self.jobs
                .get(id)
                .is_some_and(|job| !job.state.is_terminal())
        });
        self.finish_stages_if_done()?;
        Ok(cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache never answers with a config whose text is not the file's now: an
    /// edit of the same length, a broken edit, and the edit back are each seen.
    #[test]
    fn the_config_cache_parses_again_whenever_the_text_changed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.yaml");
        let config = |lr: &str| {
            format!(
                "name: x\nprimary_metric: {{name: acc, goal: max}}\n\
                 job: {{command: [python, runfile.py], params: {{lr: {lr}}}}}\n\
                 methods: {{proposed: {{}}}}\nstages: {{full: {{seeds: 2}}}}\n"
            )
        };
        let cache = ConfigCache::default();
        let lr_of = |loaded: &LoadedConfig| {
            loaded.config.job.params.as_ref().expect("params")["lr"].clone()
        };
        std::fs::write(&path, config("0.1")).expect("write");
        assert_eq!(
            lr_of(&cache.load(&path).expect("valid")),
            serde_json::json!(0.1)
        );
        assert_eq!(
            lr_of(&cache.load(&path).expect("cached")),
            serde_json::json!(0.1)
        );
        std::fs::write(&path, config("0.2")).expect("write");
        assert_eq!(
            lr_of(&cache.load(&path).expect("valid")),
            serde_json::json!(0.2)
        );
        std::fs::write(&path, "name: [").expect("write");
        assert!(matches!(
            cache.load(&path),
            Err(CoordinatorError::Config(_))
        ));
        std::fs::write(&path, config("0.2")).expect("write");
        assert_eq!(
            lr_of(&cache.load(&path).expect("valid")),
            serde_json::json!(0.2)
        );
    }

    /// A stage's cached expansion is the one a fresh expansion gives, and is not
    /// reused for other code or after the config's text changed.
    #[test]
    fn the_config_cache_expands_again_for_new_code_or_a_new_config() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.yaml");
        let config = |seeds: u32| {
            format!(
                "name: x\nprimary_metric: {{name: acc, goal: max}}\n\
                 job: {{command: [python, runfile.py]}}\n\
                 methods: {{proposed: {{}}}}\nstages: {{full: {{seeds: {seeds}}}}}\n"
            )
        };
        let fresh = |loaded: &LoadedConfig, digest: &str| {
            expand_stage(
                loaded,
                StageRequest {
                    stage: Stage::Full,
                    code_digest: digest,
                },
            )
            .expect("expands")
        };
        let cache = ConfigCache::default();
        std::fs::write(&path, config(2)).expect("write");
        let loaded = cache.load(&path).expect("valid");
        let first = cache.expand(&loaded, Stage::Full, "a").expect("expands");
        assert_eq!(first, fresh(&loaded, "a"));
        assert_eq!(
            cache.expand(&loaded, Stage::Full, "a").expect("cached"),
            first
        );
        let other_code = cache.expand(&loaded, Stage::Full, "b").expect("expands");
        assert_eq!(other_code, fresh(&loaded, "b"));
        assert_ne!(other_code[0].fingerprint, first[0].fingerprint);
        std::fs::write(&path, config(3)).expect("write");
        let edited = cache.load(&path).expect("valid");
        let more_seeds = cache.expand(&edited, Stage::Full, "b").expect("expands");
        assert_eq!(more_seeds.len(), 3);
        assert_eq!(more_seeds, fresh(&edited, "b"));
        // The older config's handle no longer reads the newer's cached stages.
        assert_eq!(
            cache
                .expand(&loaded, Stage::Full, "b")
                .expect("expands")
                .len(),
            2
        );
    }

    /// The typed record serializes exactly as the `json!` literal it replaced (same
    /// keys, order and values), so journals written before and after read the same.
    #[test]
    fn the_stage_record_matches_the_former_json_literal() {
        let text = "name: x\nprimary_metric: {name: acc, goal: max}\n\
                    job: {command: [python, runfile.py], params: {lr: 0.1, depth: 2}}\n\
                    methods: {proposed: {}, other: {params.depth: 3}}\n\
                    stages: {full: {seeds: 2, sweep: {params.lr: [0.01, 1.5e-7]}}}\n";
        let (loaded, definitions) = crate::ops::serialization_tests::expand_full(text);
        let reused: Vec<&JobId> = definitions.iter().take(1).map(|def| &def.id).collect();
        let resources = &loaded.config.resources;
        let former = json!({
            "stage_run": 3,
            "stage": Stage::Full,
            "jobs": definitions,
            "reused": reused,
            "primary_metric": loaded.config.primary_metric.name,
            "code_digest": "digest",
            "max_attempts": resources.max_attempts,
            "data_parallel": resources.data_parallel,
            "timeout_ms": resources.timeout().as_millis() as u64,
        });
        let record = StageRecord {
            stage_run: 3,
            stage: Stage::Full,
            jobs: &definitions,
            reused: reused.clone(),
            primary_metric: &loaded.config.primary_metric.name,
            code_digest: "digest",
            max_attempts: resources.max_attempts,
            data_parallel: resources.data_parallel,
            timeout_ms: resources.timeout().as_millis() as u64,
        };
        assert_eq!(definitions.len(), 8);
        assert_eq!(
            serde_json::to_string(&record).expect("record"),
            former.to_string()
        );
        // And recovery's reading of it gives the definitions back.
        let back: Vec<JobDefinition> =
            serde_json::from_value(former["jobs"].clone()).expect("definitions");
        assert_eq!(back, definitions);
    }
}
