//! The coordinator's side of the idea feedback protocol ([`crate::stage::feedback`]):
//! its research log as an event sink, and the claims evaluated after each stage.

use crate::error::CoordinatorError;
use crate::ops::CoordinatorState;
use crate::stage::claims::{evaluate, ClaimStatus, StageContext};
use crate::stage::feedback::{apply_update, EventSink, FeedbackError, IdeaUpdate};
use crate::stage::idea::{
    idea_md_path, mark_claim, read_idea_json, recorded_claim_status, version_of,
};
use crate::stage::looks::stage_look;
use crate::stage::results::JobOutcome;
use crate::stage::summary::analysis::analyse;
use expcluster_core::config::LoadedConfig;
use expcluster_core::Stage;
use serde_json::{json, Value};

impl EventSink for CoordinatorState {
    fn append_event(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: Value,
    ) -> Result<u64, FeedbackError> {
        self.idea_version = idea_version;
        self.log_event(event_type, payload)
            .map_err(|err| FeedbackError::Log(err.to_string()))
    }
}

impl CoordinatorState {
    /// Evaluates the claims after a finished stage, logs `hypothesis_evaluated` for
    /// each, and runs the update protocol when a claim is newly contradicted.
    /// `completed_seq` is the stage's `experiment_completed` event, cited as evidence.
    pub fn evaluate_claims(
        &mut self,
        loaded: &LoadedConfig,
        stage: Stage,
        stage_run: u64,
        outcomes: &[JobOutcome],
        completed_seq: u64,
    ) -> Result<(), CoordinatorError> {
        if loaded.config.claims.is_empty() {
            return Ok(());
        }
        let analysis = analyse(loaded, stage, outcomes);
        let look = stage_look(loaded, stage, self.claim_events.seeds_added());
        let code_digest = self
            .stage_runs
            .iter()
            .find(|run| run.id == stage_run)
            .map(|run| run.code.digest.clone())
            .unwrap_or_default();
        let context = StageContext {
            look: look.as_ref(),
            code_digest: &code_digest,
            earlier: self.claim_events.all(),
        };
        let evaluations = evaluate(loaded, &analysis, &context);
        let idea = read_idea_json(&self.workspace);
        let mut update = IdeaUpdate {
            source: format!("feedback after the {stage} stage (run {stage_run})"),
            evidence_events: vec![completed_seq],
            ..IdeaUpdate::default()
        };
        let mut new_md = std::fs::read_to_string(idea_md_path(&self.workspace)).unwrap_or_default();
        let next_version = version_of(&idea) + 1;
        let mut contradicted = Vec::new();
        let mut evidence = Vec::new();
        for evaluation in &evaluations {
            let already = recorded_claim_status(&idea, &evaluation.claim.id).as_deref()
                == Some("contradicted");
            let mut payload = evaluation.event_payload(loaded, stage_run, &analysis);
            if let Value::Object(map) = &mut payload {
                map.insert(
                    "already_recorded".into(),
                    (already && evaluation.status == ClaimStatus::Contradicted).into(),
                );
                map.insert("code_digest".into(), code_digest.clone().into());
            }
            let seq = self.log_event("hypothesis_evaluated", payload)?;
            if evaluation.status != ClaimStatus::Contradicted || already {
                continue;
            }
            let id = &evaluation.claim.id;
            let statement = evaluation.claim.statement.clone().unwrap_or_else(|| {
                format!(
                    "{} is better than {} on {}.",
                    evaluation.claim.better, evaluation.claim.than, evaluation.claim.metric
                )
            });
            let cited = format!("{} (research_log.jsonl event #{seq})", evaluation.summary);
            new_md = mark_claim(
                &new_md,
                id,
                &statement,
                &format!("contradicted in v{next_version}"),
                &cited,
            );
            update.evidence_events.push(seq);
            update.what_changed.push(format!(
                "Claim `{id}` marked contradicted in idea.md's Claims section, with its evidence."
            ));
            update.claim_status.push((
                id.clone(),
                json!({"status": "contradicted", "version": next_version, "stage": stage, "stage_run": stage_run, "event": seq}),
            ));
            contradicted.push(id.clone());
            evidence.push(evaluation.summary.clone());
        }
        if contradicted.is_empty() {
            return Ok(());
        }
        update.reason = format!(
            "the {stage} stage contradicted claim(s) {}",
            contradicted.join(", ")
        );
        update.why = evidence.join(" ");
        update.impact = format!(
            "stages submitted from now on run against version {next_version}; the contradicted claim(s) no longer count as supported — revise the hypothesis, method or claim with `expcluster idea update --reason … --from FILE`."
        );
        update.new_idea_md = Some(new_md);
        let workspace = self.workspace.clone();
        let applied = apply_update(&workspace, self, update).map_err(CoordinatorError::storage)?;
        tracing::warn!(from = applied.from_version, to = applied.to_version, claims = ?contradicted, "claims contradicted: idea updated");
        Ok(())
    }
}
