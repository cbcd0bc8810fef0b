//! The worker's local spool of an attempt's metric points.
//!
//! Every point is appended to `metrics.spool.jsonl` in the job's directory before it
//! is sent, and stays pending until the coordinator acknowledges it. At most
//! `memory_cap` pending points are held in memory; the rest wait on disk and are read
//! back in order as acknowledgements make room, so a job that streams millions of
//! points through a long coordinator outage cannot exhaust the worker's memory, and
//! nothing unacknowledged exists only in memory beyond the cap.
//!
//! A point from a command job's stdout also keeps where its line ended in
//! `stdout.log`. A worker restarted on the same work dir reopens the spool
//! ([`Spool::reopen`]): it resends every point in it (the coordinator stores each
//! sequence number once), numbers new points on from the last, and reads stdout on
//! from the end of the last spooled point's line, so no point is lost or stored twice.
//! A last line cut short by the worker's death is cut off (never appended after); its
//! point was never sent, and its stdout line is read again.

use expcluster_proto::v1::MetricPoint;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct Spool {
    path: PathBuf,
    file: File,
    /// Byte offset of the first point that is on disk only.
    disk_cursor: u64,
    /// Bytes written so far.
    written: u64,
    /// Points on disk only (not yet loaded into memory).
    disk_only: usize,
    memory_cap: usize,
}

impl Spool {
    pub fn create(path: &Path, memory_cap: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            disk_cursor: 0,
            written: 0,
            disk_only: 0,
            memory_cap: memory_cap.max(1),
        })
    }

    /// Opens the spool a previous worker left, to carry its attempt on: every point in
    /// it waits on disk to be sent again. Refused when it is missing or damaged before
    /// its last line (the attempt is then not carried on but requeued).
    pub fn reopen(path: &Path, memory_cap: usize) -> io::Result<Reopened> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        let (mut good_bytes, mut count) = (0u64, 0usize);
        let mut steps: HashMap<String, u64> = HashMap::new();
        let mut stdout_end = 0;
        loop {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            let (point, line_end) = parse(&line)?;
            if point.seq != count as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "metric spool {}: point {count} has sequence number {}",
                        path.display(),
                        point.seq
                    ),
                ));
            }
            let next_step = steps.entry(point.name).or_insert(0);
            *next_step = (*next_step).max(point.step + 1);
            stdout_end = line_end.unwrap_or(stdout_end);
            good_bytes += read as u64;
            count += 1;
        }
        drop(reader);
        if file.metadata()?.len() > good_bytes {
            tracing::warn!(path = %path.display(), "cutting off the metric spool's last line, written only in part");
            file.set_len(good_bytes)?;
        }
        Ok(Reopened {
            spool: Self {
                path: path.to_path_buf(),
                file,
                disk_cursor: 0,
                written: good_bytes,
                disk_only: count,
                memory_cap: memory_cap.max(1),
            },
            next_seq: count as u64,
            steps,
            stdout_end,
        })
    }

    /// Gives the spool up after a write failed: the file goes, so that no worker
    /// restarted here takes it for the attempt's whole record.
    pub fn abandon(self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "cannot remove an abandoned metric spool");
        }
    }

    /// Appends a point to the spool; queues it in memory when there is room and no
    /// older point is waiting on disk (order is kept). `stdout_end` is where the
    /// stdout line it came from ends, for a point read from a command's stdout.
    pub fn push(
        &mut self,
        point: MetricPoint,
        stdout_end: Option<u64>,
        pending: &mut VecDeque<MetricPoint>,
    ) -> io::Result<()> {
        let mut line = serde_json::json!([
            point.seq,
            point.name,
            point.step,
            point.value.to_string(),
            point.time_ms,
            stdout_end
        ])
        .to_string();
        line.push('\n');
        self.file.seek(SeekFrom::Start(self.written))?;
        self.file.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        if self.disk_only == 0 && pending.len() < self.memory_cap {
            pending.push_back(point);
            self.disk_cursor = self.written;
        } else {
            self.disk_only += 1;
        }
        Ok(())
    }

    /// Loads points waiting on disk into memory, up to the cap.
    pub fn refill(&mut self, pending: &mut VecDeque<MetricPoint>) -> io::Result<()> {
        if self.disk_only == 0 || pending.len() >= self.memory_cap {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.disk_cursor))?;
        let mut reader = BufReader::new(&self.file);
        let mut line = String::new();
        while self.disk_only > 0 && pending.len() < self.memory_cap {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "metric spool ended early",
                ));
            }
            pending.push_back(parse(&line)?.0);
            self.disk_cursor += read as u64;
            self.disk_only -= 1;
        }
        Ok(())
    }

    /// Loads every point waiting on disk into memory, whatever the cap.
    pub fn drain_all(&mut self, pending: &mut VecDeque<MetricPoint>) -> io::Result<()> {
        self.memory_cap = usize::MAX;
        self.refill(pending)
    }

    /// Points waiting on disk only.
    pub fn waiting_on_disk(&self) -> usize {
        self.disk_only
    }
}

/// A spool reopened by a restarted worker.
pub struct Reopened {
    pub spool: Spool,
    /// The sequence number of the next point.
    pub next_seq: u64,
    /// The next step of each metric.
    pub steps: HashMap<String, u64>,
    /// Where in `stdout.log` the line of the last point ends: reading resumes there.
    pub stdout_end: u64,
}

/// A spool line: the point, and where its stdout line ended (when it came from one).
fn parse(line: &str) -> io::Result<(MetricPoint, Option<u64>)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad spool line {line:?}"),
        )
    };
    let fields: Vec<serde_json::Value> = serde_json::from_str(line).map_err(|_| bad())?;
    let stdout_end = fields.get(5).and_then(serde_json::Value::as_u64);
    let point = MetricPoint {
        seq: fields
            .first()
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(bad)?,
        name: fields
            .get(1)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(bad)?
            .to_owned(),
        step: fields
            .get(2)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(bad)?,
        value: fields
            .get(3)
            .and_then(serde_json::Value::as_str)
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?,
        time_ms: fields
            .get(4)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
    };
    Ok((point, stdout_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(seq: u64, value: f64) -> MetricPoint {
        MetricPoint {
            seq,
            name: "loss".into(),
            step: seq,
            value,
            time_ms: 0,
        }
    }

    #[test]
    fn points_beyond_the_memory_cap_wait_on_disk_and_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::create(&dir.path().join("metrics.spool.jsonl"), 3).expect("spool");
        let mut pending = VecDeque::new();
        let values = [0.5, f64::NAN, f64::INFINITY, 1e-300, -2.0, 7.25, 8.0];
        for (seq, value) in values.iter().enumerate() {
            spool
                .push(point(seq as u64, *value), None, &mut pending)
                .expect("push");
        }
        assert_eq!(pending.len(), 3);
        assert_eq!(spool.waiting_on_disk(), 4);
        let mut seen = Vec::new();
        while !pending.is_empty() {
            // Acknowledge two, then let the spool refill.
            for _ in 0..2 {
                if let Some(p) = pending.pop_front() {
                    seen.push(p);
                }
            }
            spool.refill(&mut pending).expect("refill");
        }
        assert_eq!(
            seen.iter().map(|p| p.seq).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        assert!(seen[1].value.is_nan());
        assert_eq!(seen[2].value, f64::INFINITY);
        assert_eq!(seen[3].value, 1e-300);
        // A point pushed after a refill is still in order.
        spool.push(point(7, 9.0), None, &mut pending).expect("push");
        assert_eq!(pending.back().map(|p| p.seq), Some(7));
    }

    #[test]
    fn a_reopened_spool_resends_everything_and_carries_on_after_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.spool.jsonl");
        let mut spool = Spool::create(&path, 2).expect("spool");
        let mut pending = VecDeque::new();
        for seq in 0..5u64 {
            let mut p = point(seq, seq as f64);
            p.name = if seq % 2 == 0 { "loss" } else { "acc" }.into();
            p.step = seq / 2;
            spool
                .push(p, Some(10 * (seq + 1)), &mut pending)
                .expect("push");
        }
        drop(spool);
        // The worker died writing a sixth point.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"[5,\"loss\",3,\"0.").expect("torn write");
        drop(file);

        let mut reopened = Spool::reopen(&path, 2).expect("reopen");
        assert_eq!(reopened.next_seq, 5);
        assert_eq!(
            reopened.stdout_end, 50,
            "stdout resumes after the fifth point's line"
        );
        assert_eq!(reopened.steps["loss"], 3);
        assert_eq!(reopened.steps["acc"], 2);
        let mut pending = VecDeque::new();
        let mut seen = Vec::new();
        loop {
            reopened.spool.refill(&mut pending).expect("refill");
            let Some(p) = pending.pop_front() else { break };
            seen.push(p.seq);
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4], "every point waits to be resent");
        // New points go after the last whole line, not after the torn one.
        reopened
            .spool
            .push(point(5, 1.0), Some(60), &mut pending)
            .expect("push");
        drop(reopened);
        let again = Spool::reopen(&path, 2).expect("reopen again");
        assert_eq!(again.next_seq, 6);
        assert_eq!(again.stdout_end, 60);
    }

    #[test]
    fn a_spool_with_a_gap_is_not_carried_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.spool.jsonl");
        std::fs::write(&path, "[0,\"a\",0,\"1\",0,4]\n[2,\"a\",1,\"1\",0,8]\n").expect("write");
        assert!(Spool::reopen(&path, 10).is_err());
        assert!(Spool::reopen(&dir.path().join("missing"), 10).is_err());
    }
}
