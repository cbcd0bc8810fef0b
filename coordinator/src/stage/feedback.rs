//! The idea feedback protocol (seed: "after every phase… if the results don't support
//! the hypothesis, update the idea"), shared by the coordinator after each stage and by
//! `expcluster idea update` for a researcher's own changes.
//!
//! After a stage the coordinator evaluates every claim ([`crate::stage::claims`]) and logs a
//! `hypothesis_evaluated` event for each. A claim newly contradicted (not already
//! recorded as contradicted in `idea.json`) is never left standing: one update marks
//! every such claim contradicted in `idea.md`'s Claims section with its evidence.
//! Supported and inconclusive claims change nothing.
//!
//! An update, whoever makes it, writes in this order: the snapshot of the new
//! `idea.md` (private, for later diffs), `idea.md`, `idea_evolution.md` (a new entry:
//! what changed, why, impact, the log events cited, the diff), then `idea.json` with
//! the bumped version — the commit point — and finally logs `idea_updated`, which
//! carries the new version. The coordinator's `idea_version` becomes the new version,
//! so every later event and stage runs against it.

use crate::stage::idea::{
    evolution_path, idea_md_path, line_diff, read_idea_json, snapshot_path, version_of,
};
use crate::store::research_log::ResearchLog;
use crate::store::workspace::{append_text, write_atomic, Workspace};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("cannot write {path}: {reason}; fix the disk problem and retry")]
    Io { path: String, reason: String },
    #[error("cannot log the idea update: {0}")]
    Log(String),
}

/// Where events go: the coordinator's log, or the research log opened by a CLI command.
pub trait EventSink {
    /// Appends an event stamped with `idea_version`; returns its sequence number.
    fn append_event(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: Value,
    ) -> Result<u64, FeedbackError>;
}

/// The research log opened directly (no coordinator running; the caller holds the
/// workspace lock).
pub struct FileSink {
    pub workspace: Workspace,
    pub log: ResearchLog,
}

impl EventSink for FileSink {
    fn append_event(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: Value,
    ) -> Result<u64, FeedbackError> {
        let payload = match payload {
            Value::Object(map) => map,
            other => Map::from_iter([("payload".to_owned(), other)]),
        };
        let human = format!(
            "{} [v{idea_version}] {event_type} {}\n",
            chrono::Utc::now().to_rfc3339(),
            Value::Object(payload.clone())
        );
        let seq = self
            .log
            .append(event_type, idea_version, payload)
            .map_err(|err| FeedbackError::Log(err.to_string()))?;
        if let Err(err) = append_text(
            &self.workspace.logs_dir().join("experiment_log.txt"),
            &human,
        ) {
            tracing::warn!(%err, "cannot append to logs/experiment_log.txt");
        }
        Ok(seq)
    }
}

/// One change to the idea.
#[derive(Debug, Clone, Default)]
pub struct IdeaUpdate {
    pub reason: String,
    /// `feedback` (the coordinator after a stage) or `researcher`.
    pub source: String,
    /// The new `idea.md`; `None` keeps the file on disk (edited in place, or unchanged).
    pub new_idea_md: Option<String>,
    pub what_changed: Vec<String>,
    pub why: String,
    pub impact: String,
    /// Research-log events that motivated the change.
    pub evidence_events: Vec<u64>,
    /// Claim id → status object merged into `idea.json`'s `claim_status`.
    pub claim_status: Vec<(String, Value)>,
}

/// What an update did.
#[derive(Debug, Clone)]
pub struct AppliedUpdate {
    pub from_version: u32,
    pub to_version: u32,
    pub event_seq: u64,
    /// The line diff of `idea.md`, when the previous version's text is known.
    pub diff: Option<String>,
}

fn io_error(path: &std::path::Path) -> impl Fn(std::io::Error) -> FeedbackError + '_ {
    move |err| FeedbackError::Io {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

/// Applies `update` through the protocol (see the module doc for the order).
pub fn apply_update(
    workspace: &Workspace,
    sink: &mut dyn EventSink,
    update: IdeaUpdate,
) -> Result<AppliedUpdate, FeedbackError> {
    let mut idea = read_idea_json(workspace);
    let from_version = version_of(&idea);
    let to_version = from_version + 1;
    let md_path = idea_md_path(workspace);
    let current_md = std::fs::read_to_string(&md_path).unwrap_or_default();
    let previous_snapshot = snapshot_path(workspace, from_version);
    // The text of the current version: the file itself unless it was edited in place.
    let base = match &update.new_idea_md {
        Some(_) => Some(current_md.clone()),
        None => std::fs::read_to_string(&previous_snapshot).ok(),
    };
    if update.new_idea_md.is_some() && !previous_snapshot.exists() {
        write_atomic(&previous_snapshot, current_md.as_bytes())
            .map_err(io_error(&previous_snapshot))?;
    }
    let new_md = update.new_idea_md.clone().unwrap_or(current_md.clone());
    let diff = base.as_deref().map(|base| line_diff(base, &new_md));
    let now = chrono::Utc::now();

    let new_snapshot = snapshot_path(workspace, to_version);
    write_atomic(&new_snapshot, new_md.as_bytes()).map_err(io_error(&new_snapshot))?;
    if new_md != current_md {
        write_atomic(&md_path, new_md.as_bytes()).map_err(io_error(&md_path))?;
    }
    let evolution = evolution_path(workspace);
    let mut history = std::fs::read_to_string(&evolution).unwrap_or_default();
    if !history.is_empty() && !history.ends_with("\n\n") {
        history.push_str(if history.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        });
    }
    history.push_str(&evolution_entry(
        &update,
        to_version,
        &now.format("%Y-%m-%d %H:%M UTC").to_string(),
        diff.as_deref(),
    ));
    write_atomic(&evolution, history.as_bytes()).map_err(io_error(&evolution))?;

    idea.insert("version".into(), to_version.into());
    idea.insert("last_updated".into(), now.to_rfc3339().into());
    idea.insert("update_reason".into(), update.reason.clone().into());
    if !update.claim_status.is_empty() {
        let statuses = idea.entry("claim_status").or_insert_with(|| json!({}));
        if !statuses.is_object() {
            *statuses = json!({});
        }
        if let Value::Object(map) = statuses {
            map.extend(update.claim_status.iter().cloned());
        }
    }
    let idea_path = workspace.idea_json_path();
    let mut bytes =
        serde_json::to_vec_pretty(&Value::Object(idea)).map_err(|err| FeedbackError::Io {
            path: idea_path.display().to_string(),
            reason: err.to_string(),
        })?;
    bytes.push(b'\n');
    write_atomic(&idea_path, &bytes).map_err(io_error(&idea_path))?;

    let event_seq = sink.append_event(
        "idea_updated",
        to_version,
        json!({
            "from_version": from_version,
            "to_version": to_version,
            "reason": update.reason,
            "source": update.source,
            "what_changed": update.what_changed,
            "evidence_events": update.evidence_events,
            "claims": update.claim_status.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            "diff": diff,
        }),
    )?;
    Ok(AppliedUpdate {
        from_version,
        to_version,
        event_seq,
        diff,
    })
}

fn evolution_entry(update: &IdeaUpdate, version: u32, date: &str, diff: Option<&str>) -> String {
    let mut entry = format!(
        "## Version {version} ({date})\n\n**Source:** {}\n\n**What changed:**\n",
        update.source
    );
    for line in &update.what_changed {
        entry.push_str(&format!("- {line}\n"));
    }
    entry.push_str(&format!(
        "\n**Why:** {}\n\n**Impact:** {}\n",
        update.reason, update.impact
    ));
    if !update.why.is_empty() {
        entry.push_str(&format!("\n**Evidence:** {}\n", update.why));
    }
    if !update.evidence_events.is_empty() {
        let cited: Vec<String> = update
            .evidence_events
            .iter()
            .map(|seq| format!("#{seq}"))
            .collect();
        entry.push_str(&format!(
            "\n**Research-log events:** {} (`seq` in research_log.jsonl)\n",
            cited.join(", ")
        ));
    }
    match diff {
        Some(diff) if diff.lines().any(|l| l.starts_with(['+', '-'])) => {
            entry.push_str(&format!("\n**Diff of idea.md:**\n\n```diff\n{diff}```\n"));
        }
        Some(_) => entry.push_str("\n**Diff of idea.md:** none (idea.md unchanged)\n"),
        None => entry
            .push_str("\n**Diff of idea.md:** unavailable (no snapshot of the previous version)\n"),
    }
    entry
}
