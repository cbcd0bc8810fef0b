//! `research_log.jsonl`: the append-only journal of the research (seed §4).
//!
//! One writer (the coordinator), one JSON object per line, each event durable (fsync)
//! before it is acknowledged. At start-up a torn last line (no `\n`) is copied aside to
//! `research_log.jsonl.torn-<time>` and truncated away with a warning, because
//! appending after it would glue a new record onto half of an old one. A line that
//! does not parse, or whose `seq` is not the next one, inside the committed prefix is
//! corruption: opening fails and names its byte offset, unless a repair is asked for,
//! which copies the whole log to a backup and keeps the events before the damage.
//!
//! Each append is one `write` under the coordinator's lock (so records never
//! interleave). Its fsync is the append's own in a plain process, and shared with
//! every other append since the last one in a serving coordinator
//! ([`crate::store::group_commit`]: the RPC answers once that shared fsync is done).

use serde_json::{Map, Value};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What opening the log found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Where a torn tail was saved, if there was one.
    pub torn_tail_saved_to: Option<PathBuf>,
    /// The number of complete events in the log.
    pub events: u64,
    /// With `--repair`: where the whole damaged log was copied before truncation.
    pub repair_backup: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResearchLogError {
    #[error("research log {path}: line {line} at byte {offset} is not valid JSON ({reason}); start with --repair to move the damaged part aside (a backup is kept)")]
    Corrupt {
        path: PathBuf,
        line: u64,
        offset: u64,
        reason: String,
    },
    #[error("research log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The open journal; appends are durable when `append` returns, or (serving) when
/// the group commit covering them is.
#[derive(Debug)]
pub struct ResearchLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    events: Vec<Value>,
    /// Whether appended events are kept in `events` (see [`Self::release_events`]).
    keep_events: bool,
    guard: crate::store::durable::AppendGuard,
}

impl ResearchLog {
    /// Opens (or creates) the log, recovering a torn tail.
    pub fn open(path: &Path, repair: bool) -> Result<(Self, Recovery), ResearchLogError> {
        let io_error = |source| ResearchLogError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(io_error(err)),
        };
        let mut recovery = Recovery::default();
        let committed_len = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if committed_len < bytes.len() {
            // Durable before the truncation, so a crash in between loses nothing.
            let saved = aside_path(path, "torn");
            crate::store::workspace::write_atomic(&saved, &bytes[committed_len..])
                .map_err(io_error)?;
            tracing::warn!(saved = %saved.display(), bytes = bytes.len() - committed_len,
                "research log ends with a torn line; saved it aside and truncated");
            truncate(path, committed_len as u64).map_err(io_error)?;
            bytes.truncate(committed_len);
            recovery.torn_tail_saved_to = Some(saved);
        }
        let events = match parse_lines(path, &bytes) {
            Ok(events) => events,
            Err(ResearchLogError::Corrupt { offset, .. }) if repair => {
                let backup = aside_path(path, "backup");
                crate::store::workspace::write_atomic(&backup, &bytes).map_err(io_error)?;
                tracing::warn!(backup = %backup.display(), offset, "repairing the research log: keeping the events before the damage");
                truncate(path, offset).map_err(io_error)?;
                bytes.truncate(offset as usize);
                recovery.repair_backup = Some(backup);
                parse_lines(path, &bytes)?
            }
            Err(err) => return Err(err),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error)?;
        recovery.events = events.len() as u64;
        let next_seq = events
            .iter()
            .filter_map(|event| event.get("seq").and_then(Value::as_u64))
            .max()
            .map_or(0, |seq| seq + 1);
        Ok((
            Self {
                path: path.to_owned(),
                file,
                next_seq,
                events,
                keep_events: true,
                guard: crate::store::durable::AppendGuard::default(),
            },
            recovery,
        ))
    }

    /// Appends one event and makes it durable (see the module doc); returns its
    /// sequence number.
    ///
    /// The event is `{"seq", "time", "type", "idea_version", ...payload}`. A failed
    /// write or fsync is returned, never retried and reported as success.
    pub fn append(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: Map<String, Value>,
    ) -> Result<u64, ResearchLogError> {
        self.append_serialized(event_type, idea_version, &payload)
    }

    /// Appends one event like [`Self::append`], with any serializable payload (a
    /// struct or map) written straight into the line, without building a `Value` of
    /// it. For records too large to copy: a stage record of 100,000 job definitions as
    /// a `Value` tree was a ~180 MB transient peak that the process's RSS kept after
    /// the submission. The payload's keys must not be the event's own (`seq`, `time`,
    /// `type`, `idea_version`).
    pub fn append_serialized<P: serde::Serialize>(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: &P,
    ) -> Result<u64, ResearchLogError> {
        self.append_event(event_type, idea_version, payload)
            .map(|written| written.seq)
    }

    /// [`Self::append_serialized`], returning the event's time and its payload as
    /// JSON text too, for the human-readable log (serialized once for both).
    pub fn append_event<P: serde::Serialize>(
        &mut self,
        event_type: &str,
        idea_version: u32,
        payload: &P,
    ) -> Result<Written, ResearchLogError> {
        let io_error = |source| ResearchLogError::Io {
            path: self.path.clone(),
            source,
        };
        let payload = serde_json::to_string(payload).map_err(|err| io_error(err.into()))?;
        let Some(fields) = payload.strip_prefix('{') else {
            return Err(io_error(std::io::Error::other(
                "an event's payload must be a JSON object",
            )));
        };
        let seq = self.next_seq;
        let time = chrono::Utc::now().to_rfc3339();
        // The line serde would write for {seq, time, type, idea_version, ..payload}
        // (compact, in that order), put together from the payload's text instead of
        // serializing a flattened struct of it again.
        let quoted = |text: &str| serde_json::to_string(text).map_err(|err| io_error(err.into()));
        let mut line = format!(
            "{{\"seq\":{seq},\"time\":{},\"type\":{},\"idea_version\":{idea_version}",
            quoted(&time)?,
            quoted(event_type)?,
        );
        if fields != "}" {
            line.push(',');
        }
        line.push_str(fields);
        line.push('\n');
        self.guard
            .append_behind(&mut self.file, line.as_bytes())
            .map_err(io_error)?;
        self.next_seq += 1;
        if self.keep_events {
            let value = serde_json::from_str(&line).map_err(|err| io_error(err.into()))?;
            self.events.push(value);
        }
        Ok(Written { seq, time, payload })
    }

    /// Makes this log the coordinator's journal: its records are written first in each
    /// group-commit round ([`crate::store::group_commit::WriteOrder`]).
    pub fn write_as_journal(&mut self) {
        self.guard = crate::store::durable::AppendGuard::ordered(
            crate::store::group_commit::WriteOrder::Journal,
        );
    }

    /// Stops keeping events in memory and frees those read at open: for a log that is
    /// only read back at start-up. The coordinator's journal is one: its stage records
    /// carry every job definition, and a second, `Value`-tree copy of a 100,000-job
    /// stage cost more memory than the jobs themselves.
    pub fn release_events(&mut self) {
        self.keep_events = false;
        self.events = Vec::new();
    }

    /// Every event in the log, oldest first (none after [`Self::release_events`]).
    pub fn events(&self) -> &[Value] {
        &self.events
    }
}

/// An appended event: its sequence number, time and payload as JSON text.
#[derive(Debug)]
pub struct Written {
    pub seq: u64,
    pub time: String,
    pub payload: String,
}

/// Parses the committed lines. Each must be a JSON object with a `type` and the next
/// `seq` (0, 1, 2, ...): a line that is not, or a sequence that jumps, is damage inside
/// the committed prefix (a flipped byte can leave valid JSON with a wrong number).
fn parse_lines(path: &Path, bytes: &[u8]) -> Result<Vec<Value>, ResearchLogError> {
    let mut events = Vec::new();
    let mut offset = 0u64;
    for (index, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        let corrupt = |reason: String| ResearchLogError::Corrupt {
            path: path.to_owned(),
            line: index as u64 + 1,
            offset,
            reason,
        };
        if !trimmed.iter().all(u8::is_ascii_whitespace) {
            let event: Value =
                serde_json::from_slice(trimmed).map_err(|err| corrupt(err.to_string()))?;
            let expected = events.len() as u64;
            match (
                event.get("seq").and_then(Value::as_u64),
                event.get("type").and_then(Value::as_str),
            ) {
                (Some(seq), Some(_)) if seq == expected => {}
                (Some(seq), Some(_)) => {
                    return Err(corrupt(format!(
                        "sequence number {seq} where {expected} was expected"
                    )))
                }
                _ => {
                    return Err(corrupt(
                        "an event needs a numeric `seq` and a string `type`".to_owned(),
                    ))
                }
            }
            events.push(event);
        }
        offset += line.len() as u64;
    }
    Ok(events)
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

fn aside_path(path: &Path, what: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}-{stamp}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(key: &str, value: i64) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(key.into(), value.into());
        map
    }

    #[test]
    fn appends_and_reopens_with_sequence_continuing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("research_log.jsonl");
        let (mut log, _) = ResearchLog::open(&path, false).expect("open");
        assert_eq!(
            log.append("stage_started", 1, payload("n", 1))
                .expect("append"),
            0
        );
        assert_eq!(
            log.append("job_completed", 1, payload("n", 2))
                .expect("append"),
            1
        );
        drop(log);
        let (mut log, recovery) = ResearchLog::open(&path, false).expect("reopen");
        assert_eq!(recovery.events, 2);
        assert_eq!(log.append("x", 2, Map::new()).expect("append"), 2);
        assert_eq!(log.events()[2]["idea_version"], 2);
        log.release_events();
        assert_eq!(log.append("y", 2, Map::new()).expect("append"), 3);
        assert!(log.events().is_empty());
        drop(log);
        let (log, _) = ResearchLog::open(&path, false).expect("reopen");
        assert_eq!(log.events().len(), 4, "released events are still on disk");
    }

    /// The line put together from the payload's text is byte for byte what serde
    /// writes for the event as one flattened struct (how it was written before).
    #[test]
    fn event_lines_are_what_a_flattened_struct_serializes_to() {
        #[derive(serde::Serialize)]
        struct Event<'a, P> {
            seq: u64,
            time: &'a str,
            #[serde(rename = "type")]
            event_type: &'a str,
            idea_version: u32,
            #[serde(flatten)]
            payload: &'a P,
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("research_log.jsonl");
        let (mut log, _) = ResearchLog::open(&path, false).expect("open");
        let rich = serde_json::json!({
            "quote\"d": "line\nbreak \u{1f600}", "nested": {"b": [1, 2.5, null]}, "a": -3
        });
        let payloads = [rich.as_object().expect("an object").clone(), Map::new()];
        let mut expected = String::new();
        for (seq, payload) in payloads.iter().enumerate() {
            let written = log
                .append_event("type \"odd\"", 7, payload)
                .expect("append");
            assert_eq!(written.seq, seq as u64);
            assert_eq!(
                written.payload,
                serde_json::to_string(payload).expect("payload")
            );
            let former = Event {
                seq: seq as u64,
                time: &written.time,
                event_type: "type \"odd\"",
                idea_version: 7,
                payload,
            };
            expected.push_str(&serde_json::to_string(&former).expect("former"));
            expected.push('\n');
        }
        assert_eq!(std::fs::read_to_string(&path).expect("read"), expected);
        assert!(log.append_event("x", 1, &[1, 2]).is_err(), "not an object");
    }

    #[test]
    fn torn_tail_is_saved_aside_and_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("research_log.jsonl");
        fs::write(&path, b"{\"seq\":0,\"type\":\"a\"}\n{\"seq\":1,\"ty").expect("write");
        let (log, recovery) = ResearchLog::open(&path, false).expect("open");
        assert_eq!(log.events().len(), 1);
        let saved = recovery.torn_tail_saved_to.expect("torn tail saved");
        assert_eq!(fs::read(saved).expect("read"), b"{\"seq\":1,\"ty");
        assert_eq!(
            fs::read(&path).expect("read"),
            b"{\"seq\":0,\"type\":\"a\"}\n"
        );
    }

    #[test]
    fn corruption_inside_the_prefix_refuses_to_open_unless_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("research_log.jsonl");
        fs::write(
            &path,
            b"{\"seq\":0,\"type\":\"a\"}\n{\"seq\":1]\n{\"seq\":2,\"type\":\"a\"}\n",
        )
        .expect("write");
        let err = ResearchLog::open(&path, false).expect_err("corrupt");
        assert!(err.to_string().contains("byte 21"), "{err}");
        let (mut log, recovery) = ResearchLog::open(&path, true).expect("repair");
        assert_eq!(log.events().len(), 1);
        let backup = recovery.repair_backup.expect("a backup is kept");
        assert!(fs::read(backup)
            .expect("backup")
            .ends_with(b"{\"seq\":2,\"type\":\"a\"}\n"));
        assert_eq!(log.append("next", 1, Map::new()).expect("append"), 1);
    }

    #[test]
    fn a_jump_in_the_sequence_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("research_log.jsonl");
        // Valid JSON, but a flipped digit: seq 7 where 1 belongs.
        fs::write(
            &path,
            b"{\"seq\":0,\"type\":\"a\"}\n{\"seq\":7,\"type\":\"a\"}\n",
        )
        .expect("write");
        let err = ResearchLog::open(&path, false).expect_err("corrupt");
        assert!(
            err.to_string().contains("byte 21") && err.to_string().contains("sequence number 7"),
            "{err}"
        );
    }

    #[test]
    fn a_serialized_payload_writes_the_same_line_as_a_value_payload() {
        #[derive(serde::Serialize)]
        struct Record<'a> {
            stage_run: u64,
            jobs: &'a [&'a str],
            ratio: f64,
            nested: Map<String, Value>,
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut by_value, _) = ResearchLog::open(&dir.path().join("a.jsonl"), false).expect("a");
        let (mut direct, _) = ResearchLog::open(&dir.path().join("b.jsonl"), false).expect("b");
        let record = Record {
            stage_run: 7,
            jobs: &["j1", "j\"2"],
            ratio: 0.1,
            nested: payload("z", -3),
        };
        let value = serde_json::to_value(&record).expect("value");
        let Value::Object(map) = value else {
            panic!("a struct is an object")
        };
        by_value.append("stage", 2, map).expect("append");
        direct
            .append_serialized("stage", 2, &record)
            .expect("append");
        assert_eq!(
            direct
                .append_serialized("next", 2, &payload("n", 1))
                .expect("seq"),
            1
        );
        // Kept events match too (a journal that was not released reads them back).
        assert_eq!(by_value.events()[0]["jobs"], direct.events()[0]["jobs"]);
        drop((by_value, direct));
        let without_time = |name: &str| -> Vec<String> {
            let text = fs::read_to_string(dir.path().join(name)).expect("read");
            text.lines()
                .map(|line| {
                    let mut event: Value = serde_json::from_str(line).expect("json");
                    event["time"] = Value::Null;
                    event.to_string()
                })
                .collect()
        };
        // Same keys in the same order, same values: recovery cannot tell them apart.
        assert_eq!(without_time("a.jsonl")[0], without_time("b.jsonl")[0]);
        let (reopened, recovery) =
            ResearchLog::open(&dir.path().join("b.jsonl"), false).expect("reopen");
        assert_eq!(recovery.events, 2);
        assert_eq!(reopened.events()[0]["jobs"][1], "j\"2");
    }
}
