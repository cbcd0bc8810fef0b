//! The shell blocks of the documentation (README.md and docs/*.md), so that tests can
//! run them as a reader would and the docs cannot drift from the CLI.
//!
//! Every fenced block in a shell language (`sh`, `bash`, `shell`, `console`, `zsh`)
//! must follow a one-line HTML comment that says who runs it:
//!
//! - `<!-- run: local -->`: `tests/tests/it/docs_executed.rs` runs it on one machine;
//! - `<!-- run: cluster [role] -->`: a multi-host test runs it (the role, such as
//!   `head-node` or `client`, says on which host);
//! - `<!-- not run: <reason> -->`: nothing runs it, for the reason given.
//!
//! Blank lines may sit between the comment and the fence, nothing else. A block
//! without a marker parses as [`Marker::Missing`] and a test fails on it, naming
//! its file and line, so a new block cannot slip in unrun without someone deciding
//! so. Blocks in other languages (yaml, python, a diagram without a language) are
//! not shell blocks and need no marker.

use std::path::{Path, PathBuf};

/// The info strings of the fenced blocks that hold shell commands.
const SHELL_LANGUAGES: &[&str] = &["sh", "bash", "shell", "console", "zsh"];

/// Who runs a shell block, from the comment above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `<!-- run: local -->`
    Local,
    /// `<!-- run: cluster -->` or `<!-- run: cluster <role> -->`
    Cluster { role: Option<String> },
    /// `<!-- not run: <reason> -->`
    NotRun { reason: String },
    /// No marker above the block; `found` is the HTML comment above it when that
    /// comment is not a marker (a typo, say).
    Missing { found: Option<String> },
}

/// One fenced shell block of a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellBlock {
    pub file: PathBuf,
    /// The 1-based line of the opening fence.
    pub line: usize,
    /// The fence's language (`sh`, `bash`, ...).
    pub language: String,
    pub marker: Marker,
    /// The commands in order: one per logical line, a `\` continuation joined into
    /// one line, full-line comments and blank lines left out, trailing `# comments`
    /// kept (the shell ignores them). In a `console` block only the `$ ` lines (the
    /// prompt removed) are commands; the others are their output.
    pub commands: Vec<String>,
}

impl ShellBlock {
    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// The shell blocks of one Markdown file.
pub fn shell_blocks(markdown: &Path) -> Vec<ShellBlock> {
    let text = std::fs::read_to_string(markdown)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", markdown.display()));
    parse_shell_blocks(markdown, &text)
}

/// The shell blocks of README.md and every docs/*.md under `repo_root`, file by file
/// (README first, then docs/ in name order).
pub fn all_doc_blocks(repo_root: &Path) -> Vec<ShellBlock> {
    doc_files(repo_root)
        .iter()
        .flat_map(|file| shell_blocks(file))
        .collect()
}

/// The blocks marked `<!-- run: cluster <role> -->` under `repo_root`, in order.
pub fn cluster_blocks(repo_root: &Path, role: &str) -> Vec<ShellBlock> {
    all_doc_blocks(repo_root)
        .into_iter()
        .filter(|block| matches!(&block.marker, Marker::Cluster { role: Some(r) } if r == role))
        .collect()
}

/// README.md and docs/*.md under `repo_root`.
pub fn doc_files(repo_root: &Path) -> Vec<PathBuf> {
    let docs = repo_root.join("docs");
    let entries =
        std::fs::read_dir(&docs).unwrap_or_else(|e| panic!("cannot list {}: {e}", docs.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files.insert(0, repo_root.join("README.md"));
    files
}

/// The shell blocks of Markdown `text`, read from `file` (used only to name them).
pub fn parse_shell_blocks(file: &Path, text: &str) -> Vec<ShellBlock> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some((fence, language)) = opening_fence(lines[index]) else {
            index += 1;
            continue;
        };
        let body_start = index + 1;
        let body_end = (body_start..lines.len())
            .find(|&i| closes(lines[i], &fence))
            .unwrap_or(lines.len());
        if SHELL_LANGUAGES.contains(&language.as_str()) {
            let body = &lines[body_start..body_end];
            blocks.push(ShellBlock {
                file: file.to_owned(),
                line: index + 1,
                marker: marker_above(&lines[..index]),
                commands: commands(body, language == "console"),
                language,
            });
        }
        index = body_end + 1;
    }
    blocks
}

/// The fence (its backticks or tildes) and the language of an opening fence line.
fn opening_fence(line: &str) -> Option<(String, String)> {
    let trimmed = line.trim_start();
    let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let fence_len = trimmed.chars().take_while(|c| *c == fence_char).count();
    if fence_len < 3 {
        return None;
    }
    let info = &trimmed[fence_len..];
    // A backtick fence's info string cannot hold a backtick (that is inline code).
    if fence_char == '`' && info.contains('`') {
        return None;
    }
    let language = info
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Some((trimmed[..fence_len].to_owned(), language))
}

/// Whether `line` closes a block opened with `fence`.
fn closes(line: &str, fence: &str) -> bool {
    let trimmed = line.trim();
    let fence_char = fence.chars().next().unwrap_or('`');
    trimmed.len() >= fence.len() && trimmed.chars().all(|c| c == fence_char)
}

/// The marker on the last non-blank line of `before`.
fn marker_above(before: &[&str]) -> Marker {
    let Some(above) = before
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
    else {
        return Marker::Missing { found: None };
    };
    let missing = || Marker::Missing {
        found: Some(above.to_owned()),
    };
    let Some(comment) = above
        .strip_prefix("<!--")
        .and_then(|rest| rest.strip_suffix("-->"))
        .map(str::trim)
    else {
        return Marker::Missing { found: None };
    };
    if let Some(reason) = comment.strip_prefix("not run:").map(str::trim) {
        if reason.is_empty() {
            return missing();
        }
        return Marker::NotRun {
            reason: reason.to_owned(),
        };
    }
    let Some(what) = comment.strip_prefix("run:").map(str::trim) else {
        return missing();
    };
    let mut words = what.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("local"), None, _) => Marker::Local,
        (Some("cluster"), role, None) => Marker::Cluster {
            role: role.map(str::to_owned),
        },
        _ => missing(),
    }
}

/// The commands of a block's body (see [`ShellBlock::commands`]).
fn commands(body: &[&str], console: bool) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending: Option<String> = None;
    for raw in body {
        let line = raw.trim();
        let line = match pending.as_mut() {
            // A continuation line: part of the command above, whatever it starts with.
            Some(_) => line,
            None if console => match line.strip_prefix("$ ") {
                Some(command) => command.trim_start(),
                None => continue,
            },
            None => line,
        };
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        let (part, continues) = match line.strip_suffix('\\') {
            Some(part) => (part.trim_end(), true),
            None => (line, false),
        };
        let command = match pending.take() {
            Some(mut joined) => {
                if !part.is_empty() {
                    joined.push(' ');
                    joined.push_str(part);
                }
                joined
            }
            None => part.to_owned(),
        };
        if continues {
            pending = Some(command);
        } else {
            commands.push(command);
        }
    }
    // A block that ends on a `\` still ran its last command in the reader's shell.
    commands.extend(pending);
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<ShellBlock> {
        parse_shell_blocks(Path::new("doc.md"), text)
    }

    #[test]
    fn a_marked_block_has_its_marker_line_and_commands() {
        let text = "# Title\n\n<!-- run: local -->\n```sh\nexpcluster init x\n\n# a note\nexpcluster validate --idea x   # prints the matrix\n```\n";
        let blocks = parse(text);
        assert_eq!(blocks.len(), 1);
        let block = &blocks[0];
        assert_eq!(block.line, 4);
        assert_eq!(block.location(), "doc.md:4");
        assert_eq!(block.language, "sh");
        assert_eq!(block.marker, Marker::Local);
        assert_eq!(
            block.commands,
            [
                "expcluster init x",
                "expcluster validate --idea x   # prints the matrix"
            ]
        );
    }

    #[test]
    fn every_marker_form_parses() {
        let cases = [
            ("<!-- run: local -->", Marker::Local),
            ("<!--run:local-->", Marker::Local),
            ("<!-- run: cluster -->", Marker::Cluster { role: None }),
            (
                "<!-- run: cluster head-node -->",
                Marker::Cluster {
                    role: Some("head-node".into()),
                },
            ),
            (
                "<!-- not run: make test is the suite itself -->",
                Marker::NotRun {
                    reason: "make test is the suite itself".into(),
                },
            ),
            (
                "<!-- not run: -->",
                Marker::Missing {
                    found: Some("<!-- not run: -->".into()),
                },
            ),
            (
                "<!-- run: locally -->",
                Marker::Missing {
                    found: Some("<!-- run: locally -->".into()),
                },
            ),
            (
                "<!-- run: local now -->",
                Marker::Missing {
                    found: Some("<!-- run: local now -->".into()),
                },
            ),
            (
                "<!-- a comment -->",
                Marker::Missing {
                    found: Some("<!-- a comment -->".into()),
                },
            ),
            ("Some prose:", Marker::Missing { found: None }),
        ];
        for (comment, expected) in cases {
            let text = format!("{comment}\n\n```bash\ntrue\n```\n");
            assert_eq!(parse(&text)[0].marker, expected, "{comment}");
        }
        assert_eq!(
            parse("```sh\ntrue\n```\n")[0].marker,
            Marker::Missing { found: None }
        );
    }

    #[test]
    fn continuations_are_joined_into_one_command() {
        let text = "<!-- run: local -->\n```sh\nopenssl req -x509 \\\n    -keyout ca.key \\\n    -subj \"/CN=x\"\nexpcluster coordinator \\\n    --tls-client-ca ca.pem   # mutual TLS\nlast \\\n```\n";
        assert_eq!(
            parse(text)[0].commands,
            [
                "openssl req -x509 -keyout ca.key -subj \"/CN=x\"",
                "expcluster coordinator --tls-client-ca ca.pem   # mutual TLS",
                "last",
            ]
        );
    }

    #[test]
    fn a_continued_line_starting_with_a_hash_is_not_a_comment() {
        let text = "```sh\necho a \\\n  '#not a comment'\n```\n";
        assert_eq!(parse(text)[0].commands, ["echo a '#not a comment'"]);
    }

    #[test]
    fn console_blocks_take_the_prompted_lines_and_skip_the_output() {
        let text = "<!-- not run: output shown -->\n```console\n$ expcluster status \\\n    --json\n{\"stages\": []}\n$ echo done\ndone\n```\n";
        let block = &parse(text)[0];
        assert_eq!(block.commands, ["expcluster status --json", "echo done"]);
        assert_eq!(
            block.marker,
            Marker::NotRun {
                reason: "output shown".into()
            }
        );
    }

    #[test]
    fn other_languages_and_untagged_blocks_are_not_shell_blocks() {
        let text = "<!-- run: local -->\n```yaml\na: 1\n```\n\n```\nexpcluster submit   (diagram)\n```\n\n```python\nimport os\n```\n\n```Bash\nls\n```\n";
        let blocks = parse(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].line, 14);
        assert_eq!(blocks[0].language, "bash");
    }

    #[test]
    fn a_fence_inside_a_block_does_not_end_a_longer_fence_and_indented_fences_count() {
        let text = "<!-- run: local -->\n````sh\necho '```'\n````\n\n- a list item:\n\n  <!-- not run: indented -->\n  ```sh\n  echo indented\n  ```\n";
        let blocks = parse(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].commands, ["echo '```'"]);
        assert_eq!(blocks[1].line, 9);
        assert_eq!(blocks[1].commands, ["echo indented"]);
        assert_eq!(
            blocks[1].marker,
            Marker::NotRun {
                reason: "indented".into()
            }
        );
    }

    #[test]
    fn the_marker_must_be_the_line_right_above_the_block() {
        let text = "<!-- run: local -->\nSome prose in between.\n```sh\ntrue\n```\n";
        assert_eq!(parse(text)[0].marker, Marker::Missing { found: None });
    }

    #[test]
    fn an_unclosed_block_runs_to_the_end_of_the_file() {
        let text = "<!-- run: local -->\n```sh\necho a\necho b\n";
        assert_eq!(parse(text)[0].commands, ["echo a", "echo b"]);
    }

    #[test]
    fn the_repository_docs_parse_and_readme_comes_first() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = doc_files(&root);
        assert!(files[0].ends_with("README.md"));
        assert!(files.iter().any(|f| f.ends_with("security.md")));
        assert!(!all_doc_blocks(&root).is_empty());
        let head_node = cluster_blocks(&root, "head-node");
        assert!(!head_node.is_empty(), "README.md marks its head-node block");
        assert!(head_node[0].file.ends_with("README.md"));
    }
}
