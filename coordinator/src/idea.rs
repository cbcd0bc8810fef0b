//! The idea's metadata (`idea.json`): the version every event and stage refers to.

use crate::workspace::Workspace;

/// The idea's current version; 1 when `idea.json` is missing or has none.
pub fn read_version(workspace: &Workspace) -> u32 {
    std::fs::read(workspace.idea_json_path())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|idea| idea["version"].as_u64())
        .and_then(|version| u32::try_from(version).ok())
        .unwrap_or(1)
}
