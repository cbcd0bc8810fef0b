//! The idea's files: `idea.json` (the version every event and stage refers to),
//! `idea.md` (whose `## Claims` section records what the evidence says about each
//! claim), and the private snapshots of every version's `idea.md` that let a later
//! update record a diff.
//!
//! Writing them in the right order is [`crate::stage::feedback`]'s job; this module only
//! reads and transforms their contents.

use crate::store::workspace::Workspace;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The idea's current version; 1 when `idea.json` is missing or has none.
pub fn read_version(workspace: &Workspace) -> u32 {
    version_of(&read_idea_json(workspace))
}

/// `idea.json` as an object (empty when missing or unreadable, so an update can still
/// create a valid one).
pub fn read_idea_json(workspace: &Workspace) -> Map<String, Value> {
    std::fs::read(workspace.idea_json_path())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|idea| match idea {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default()
}

/// The `version` of an `idea.json` object (1 when absent).
pub fn version_of(idea: &Map<String, Value>) -> u32 {
    idea.get("version")
        .and_then(Value::as_u64)
        .and_then(|version| u32::try_from(version).ok())
        .unwrap_or(1)
}

pub fn idea_md_path(workspace: &Workspace) -> PathBuf {
    workspace.root().join("idea.md")
}

pub fn evolution_path(workspace: &Workspace) -> PathBuf {
    workspace.root().join("idea_evolution.md")
}

/// Where the text of `idea.md` at `version` is kept (private state, not the seed's
/// layout), so the next update can show what changed.
pub fn snapshot_path(workspace: &Workspace, version: u32) -> PathBuf {
    workspace
        .state_dir()
        .join("idea_history")
        .join(format!("v{version}.md"))
}

/// The status of the claim `id` recorded in `idea.json` (`claim_status`), if any.
pub fn recorded_claim_status(idea: &Map<String, Value>, id: &str) -> Option<String> {
    idea.get("claim_status")?
        .get(id)?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}

/// `idea.md` with the claim `id` marked `status_text` and `evidence` added under it.
///
/// Claims are bullets `- **id** (status): statement` in the `## Claims` section (what
/// `expcluster init` writes). A claim missing there is added; a missing section is
/// appended, so the evidence is never lost for want of a heading.
pub fn mark_claim(
    idea_md: &str,
    id: &str,
    statement: &str,
    status_text: &str,
    evidence: &str,
) -> String {
    let mut lines: Vec<String> = idea_md.lines().map(str::to_owned).collect();
    let bullet_prefix = format!("- **{id}**");
    let evidence_line = format!("  - Evidence: {evidence}");
    if let Some(index) = lines
        .iter()
        .position(|line| line.trim_start().starts_with(&bullet_prefix))
    {
        let rest = lines[index].trim_start()[bullet_prefix.len()..].to_owned();
        let text = match rest
            .trim_start()
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
        {
            Some((_, after)) => after.trim_start_matches(':').trim().to_owned(),
            None => rest.trim_start_matches(':').trim().to_owned(),
        };
        let text = if text.is_empty() {
            statement.to_owned()
        } else {
            text
        };
        lines[index] = format!("{bullet_prefix} ({status_text}): {text}");
        // After any earlier evidence lines of this claim.
        let mut insert_at = index + 1;
        while insert_at < lines.len() && lines[insert_at].starts_with("  ") {
            insert_at += 1;
        }
        lines.insert(insert_at, evidence_line);
    } else {
        let new_bullet = [
            format!("{bullet_prefix} ({status_text}): {statement}"),
            evidence_line,
        ];
        match lines.iter().position(|line| line.trim() == "## Claims") {
            Some(header) => {
                let mut end = header + 1;
                while end < lines.len() && !lines[end].starts_with("## ") {
                    end += 1;
                }
                while end > header + 1 && lines[end - 1].trim().is_empty() {
                    end -= 1;
                }
                for (offset, line) in new_bullet.into_iter().enumerate() {
                    lines.insert(end + offset, line);
                }
            }
            None => {
                if lines.last().is_some_and(|line| !line.trim().is_empty()) {
                    lines.push(String::new());
                }
                lines.push("## Claims".to_owned());
                lines.extend(new_bullet);
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A line diff of `old` → `new` (`-`/`+`/` ` prefixes, longest common subsequence);
/// idea files are small, so the quadratic table is fine.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            table[i][j] = if a[i] == b[j] {
                table[i + 1][j + 1] + 1
            } else {
                table[i + 1][j].max(table[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || table[i + 1][j] >= table[i][j + 1]) {
            // Deletions before insertions, as `diff -u` shows a replaced line.
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDEA: &str = "# x\n\n## Hypothesis\nH.\n\n## Claims\n- **beats-linear** (open): MLP beats linear.\n- **other** (open): Other.\n";

    #[test]
    fn marks_an_existing_claim_and_keeps_its_statement() {
        let marked = mark_claim(
            IDEA,
            "beats-linear",
            "ignored",
            "contradicted in v2",
            "linear wins by 0.2",
        );
        assert!(marked.contains("- **beats-linear** (contradicted in v2): MLP beats linear.\n  - Evidence: linear wins by 0.2\n- **other** (open)"), "{marked}");
        let again = mark_claim(&marked, "beats-linear", "", "contradicted in v3", "again");
        assert!(
            again.contains("  - Evidence: linear wins by 0.2\n  - Evidence: again\n"),
            "{again}"
        );
    }

    #[test]
    fn adds_a_missing_claim_or_section() {
        let added = mark_claim(IDEA, "new", "New claim.", "contradicted in v2", "e");
        assert!(added.contains("- **other** (open): Other.\n- **new** (contradicted in v2): New claim.\n  - Evidence: e\n"), "{added}");
        let no_section = mark_claim("# x\n", "c", "C.", "contradicted in v2", "e");
        assert_eq!(
            no_section,
            "# x\n\n## Claims\n- **c** (contradicted in v2): C.\n  - Evidence: e\n"
        );
    }

    #[test]
    fn diff_shows_changed_lines() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nx\nc\n"), " a\n-b\n+x\n c\n");
        assert_eq!(line_diff("", "a\n"), "+a\n");
    }
}
