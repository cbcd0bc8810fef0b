//! What the dashboard reads from the workspace's files rather than the coordinator's
//! memory: the claims' verdicts and the idea's versions (research_log.jsonl,
//! idea.json, idea_evolution.md). They change once per stage; the page reads them
//! again when the live feed says a `hypothesis_evaluated` or `idea_updated` event was
//! written.

use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// The research log's events of these types, in order. Only lines that name one of
/// them are parsed (a 10,000-job log is mostly `job_completed`).
pub fn events_of(root: &Path, types: &[&str]) -> Vec<Value> {
    let Ok(file) = std::fs::File::open(root.join("research_log.jsonl")) else {
        return Vec::new();
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| types.iter().any(|kind| line.contains(kind)))
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .filter(|event| types.iter().any(|kind| event["type"] == *kind))
        .collect()
}

/// idea.json, idea_evolution.md and every `idea_updated` event.
pub fn idea(root: &Path) -> Value {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    let idea_json: Value = serde_json::from_str(&read("idea.json")).unwrap_or(Value::Null);
    serde_json::json!({
        "idea_json": idea_json,
        "idea_md": read("idea.md"),
        "evolution_md": read("idea_evolution.md"),
        "updates": events_of(root, &["idea_updated"]),
    })
}
