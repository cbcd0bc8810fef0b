//! `experiment_results/job_results.jsonl`: one line per succeeded attempt, never
//! rewritten.
//!
//! Each succeeded attempt used to get its own `jobs/<id>/<fingerprint>/metrics.json`:
//! two directories and a file created under the state mutex for every job. Creating
//! inodes is the one thing a file system cannot batch, and on an ext4 without a
//! journal (this project's build machines) every new inode scans past the inodes
//! deleted in the last minutes: `perf` put 40% of a 10,000-job dispatch in
//! `ext4_mkdir`/`ext4_create`, and a Python loop of the same calls measured 0.7-1.6 ms
//! per job. An append to one open file costs a `write`, and its fsync joins the group
//! commit (it is durable before the completion is acknowledged, like the research-log
//! event written right after it).
//!
//! The coordinator keeps, for each job's latest success, where its line is
//! ([`LineRef`]), and reads the line back when the stage is aggregated. Readers
//! without a coordinator (`expcluster summarize`) [`scan`] the file once, then read
//! the lines they need. A torn last line
//! (a crash mid-append) was never acknowledged, so opening drops it.

use crate::store::durable::AppendGuard;
use serde::Deserialize;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where one line is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    offset: u64,
    len: u64,
}

/// What identifies a line: the attempt it records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct LineKey {
    pub job_id: String,
    pub fingerprint: String,
    pub stage_run: u64,
    pub attempt: u32,
}

impl LineKey {
    /// The key of the attempt a `job_completed` event reports.
    pub fn of_event(event: &Value) -> Option<LineKey> {
        Some(LineKey {
            job_id: event["job_id"].as_str()?.to_owned(),
            fingerprint: event["fingerprint"].as_str()?.to_owned(),
            stage_run: event["stage_run"].as_u64()?,
            attempt: u32::try_from(event["attempt"].as_u64()?).ok()?,
        })
    }
}

/// The open results file (the coordinator is its one writer).
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    file: File,
    len: u64,
    guard: AppendGuard,
}

impl ResultsFile {
    /// Opens (or creates) the file, drops a torn last line, and returns every line's
    /// key and place.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<(LineKey, LineRef)>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let (lines, committed) = scan(&file)?;
        let len = file.metadata()?.len();
        if committed < len {
            tracing::warn!(path = %path.display(), bytes = len - committed,
                "the job results file ends with a torn line (never acknowledged); dropping it");
            file.set_len(committed)?;
            file.sync_all()?;
        }
        Ok((
            Self {
                path: path.to_owned(),
                file,
                len: committed,
                guard: AppendGuard::ordered(crate::store::group_commit::WriteOrder::Results),
            },
            lines,
        ))
    }

    /// Appends one line (which must end in `\n`); durable as any journal append is.
    pub fn append(&mut self, line: &[u8]) -> io::Result<LineRef> {
        debug_assert!(line.ends_with(b"\n"), "a results line ends with a newline");
        let at = LineRef {
            offset: self.len,
            len: line.len() as u64,
        };
        self.guard.append_behind(&mut self.file, line)?;
        self.len += at.len;
        Ok(at)
    }

    /// The line at `at`, parsed.
    pub fn read(&self, at: LineRef) -> io::Result<Value> {
        read_line_of(&self.path, &self.file, at)
    }

    /// A handle of its own for reading lines without the state lock: appends only
    /// add lines after those already written, so a line once appended reads the same
    /// through it while others are being appended.
    pub fn reader(&self) -> io::Result<ResultsReader> {
        Ok(ResultsReader {
            path: self.path.clone(),
            file: self.file.try_clone()?,
            appended: crate::store::group_commit::ticket(),
        })
    }
}

/// Reads lines of `job_results.jsonl` (see [`ResultsFile::reader`]).
#[derive(Debug)]
pub struct ResultsReader {
    path: PathBuf,
    file: File,
    /// The commit ticket covering every line appended when the reader was made: the
    /// lines are appended behind ([`AppendGuard::append_behind`]), so they may not be
    /// in the file yet.
    appended: Option<u64>,
}

impl ResultsReader {
    /// Waits until every line appended before the reader was made is in the file;
    /// fails (say, the disk is full) when they cannot be written yet.
    pub fn wait_appended(&self) -> io::Result<()> {
        match self.appended {
            Some(ticket) => crate::store::group_commit::global()
                .wait_blocking(ticket)
                .map_err(|reason| io::Error::other(format!("{}: {reason}", self.path.display()))),
            None => Ok(()),
        }
    }

    /// The line at `at`, parsed. In a serving coordinator a line just appended may
    /// not be in the file yet: read through [`Self::reader`], after
    /// [`ResultsReader::wait_appended`].
    pub fn read(&self, at: LineRef) -> io::Result<Value> {
        read_line_of(&self.path, &self.file, at)
    }
}

/// [`read_line`], an error naming the file.
fn read_line_of(path: &Path, file: &File, at: LineRef) -> io::Result<Value> {
    read_line(file, at).map_err(|err| io::Error::other(format!("{}: {err}", path.display())))
}

/// Reads and parses the line at `at` of `file`.
pub fn read_line(file: &File, at: LineRef) -> io::Result<Value> {
    let len = usize::try_from(at.len).map_err(io::Error::other)?;
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, at.offset)?;
    serde_json::from_slice(&bytes).map_err(io::Error::other)
}

/// The key and place of every complete line of `file`, read through once (the file
/// can hold every series of an experiment, so it is never read whole), and the length
/// of its complete lines. A line that does not parse is skipped with a warning: it
/// identifies no attempt, and the attempt it meant is rebuilt from its spool if the
/// research log says it succeeded.
pub fn scan(file: &File) -> io::Result<(Vec<(LineKey, LineRef)>, u64)> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(0))?;
    let mut lines = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || !line.ends_with(b"\n") {
            return Ok((lines, offset));
        }
        let at = LineRef {
            offset,
            len: read as u64,
        };
        offset += at.len;
        match serde_json::from_slice::<LineKey>(&line) {
            Ok(key) => lines.push((key, at)),
            Err(err) => {
                tracing::warn!(offset = at.offset, %err, "skipping an unreadable line of the job results file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(job: &str, attempt: u32) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&json!({
            "job_id": job, "fingerprint": "fp", "stage_run": 1, "attempt": attempt,
            "series": {"loss": [1.0, 0.5]},
        }))
        .expect("json");
        bytes.push(b'\n');
        bytes
    }

    #[test]
    fn appended_lines_are_found_again_by_reading_and_by_scanning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r").join("job_results.jsonl");
        let (mut file, existing) = ResultsFile::open(&path).expect("open");
        assert!(existing.is_empty());
        let first = file.append(&line("a", 1)).expect("append");
        let second = file.append(&line("b", 2)).expect("append");
        assert_eq!(file.read(second).expect("read")["job_id"], "b");
        assert_eq!(file.read(first).expect("read")["series"]["loss"][1], 0.5);
        drop(file);
        let (file, lines) = ResultsFile::open(&path).expect("reopen");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].0.job_id, "b");
        assert_eq!(lines[1].0.attempt, 2);
        assert_eq!(lines[1].1, second);
        assert_eq!(file.read(lines[0].1).expect("read")["job_id"], "a");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_next_append_starts_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job_results.jsonl");
        let mut bytes = line("a", 1);
        bytes.extend_from_slice(br#"{"job_id":"b","finger"#);
        std::fs::write(&path, &bytes).expect("write");
        let (mut file, lines) = ResultsFile::open(&path).expect("open");
        assert_eq!(lines.len(), 1);
        let at = file.append(&line("c", 1)).expect("append");
        assert_eq!(file.read(at).expect("read")["job_id"], "c");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    }

    #[test]
    fn an_unreadable_line_is_skipped_and_the_rest_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job_results.jsonl");
        let mut bytes = line("a", 1);
        bytes.extend_from_slice(b"not json\n");
        bytes.extend_from_slice(&line("b", 1));
        std::fs::write(&path, &bytes).expect("write");
        let (lines, committed) = scan(&File::open(&path).expect("open")).expect("scan");
        assert_eq!(committed, bytes.len() as u64);
        let jobs: Vec<&str> = lines.iter().map(|(k, _)| k.job_id.as_str()).collect();
        assert_eq!(jobs, ["a", "b"]);
    }
}
