//! Errors in `config.yaml`, located at a file, line and column, with a hint.

use std::fmt;
use std::path::PathBuf;

/// A config error a researcher can act on: where it is, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the position is unknown (for example an unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Finds the position of a key path (`["stages", "full", "sweep"]`) in YAML text.
///
/// serde_yaml reports positions only for syntax and type errors, so semantic errors
/// (an unknown method name, an override path that names nothing) are located by
/// scanning for each key in turn after the previous one. This finds block-style and
/// flow-style keys alike; when a key cannot be found the parent's position is used.
pub fn locate_key(text: &str, path: &[&str]) -> (usize, usize) {
    let mut offset = 0;
    let mut found = (0, 0);
    for key in path {
        let Some(relative) = find_key_from(&text[offset..], key) else {
            break;
        };
        offset += relative;
        found = line_column(text, offset);
        offset += key.len();
    }
    found
}

fn find_key_from(text: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(relative) = text[start..].find(key) {
        let at = start + relative;
        let before_ok = at == 0
            || text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-' | '"' | '\''));
        let after = text[at + key.len()..].trim_start_matches(['"', '\'']);
        if before_ok && after.trim_start_matches(' ').starts_with(':') {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_block_and_flow_keys() {
        let text = "name: x\nstages:\n  full: {seeds: 3, sweep: {lr: [1]}}\n  baselines:\n    seeds: 2\n";
        assert_eq!(locate_key(text, &["stages"]), (2, 1));
        assert_eq!(locate_key(text, &["stages", "full", "sweep"]), (3, 20));
        assert_eq!(locate_key(text, &["stages", "baselines", "seeds"]), (5, 5));
    }
}
