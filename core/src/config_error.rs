//! Errors in `config.yaml`, located at a file, line and column, with a hint.

use crate::config_locate::{locate, At};
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

/// Finds the position of a key path (`["stages", "full", "sweep"]`) in YAML text:
/// each key is looked for among the children of the previous one (see
/// [`crate::config_locate`]); when a key cannot be found the parent's position is used.
pub fn locate_key(text: &str, path: &[&str]) -> (usize, usize) {
    let steps: Vec<At<'_>> = path.iter().map(|key| At::Key(key)).collect();
    locate(text, &steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_block_and_flow_keys() {
        let text =
            "name: x\nstages:\n  full: {seeds: 3, sweep: {lr: [1]}}\n  baselines:\n    seeds: 2\n";
        assert_eq!(locate_key(text, &["stages"]), (2, 1));
        assert_eq!(locate_key(text, &["stages", "full", "sweep"]), (3, 20));
        assert_eq!(locate_key(text, &["stages", "baselines", "seeds"]), (5, 5));
    }
}
