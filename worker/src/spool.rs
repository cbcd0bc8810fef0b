//! The worker's local spool of an attempt's metric points.
//!
//! Every point is appended to `metrics.spool.jsonl` in the job's directory before it
//! is sent, and stays pending until the coordinator acknowledges it. At most
//! `memory_cap` pending points are held in memory; the rest wait on disk and are read
//! back in order as acknowledgements make room, so a job that streams millions of
//! points through a long coordinator outage cannot exhaust the worker's memory, and
//! nothing unacknowledged exists only in memory beyond the cap.

use expcluster_proto::v1::MetricPoint;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

pub struct Spool {
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
            file,
            disk_cursor: 0,
            written: 0,
            disk_only: 0,
            memory_cap: memory_cap.max(1),
        })
    }

    /// Appends a point to the spool; queues it in memory when there is room and no
    /// older point is waiting on disk (order is kept).
    pub fn push(
        &mut self,
        point: MetricPoint,
        pending: &mut VecDeque<MetricPoint>,
    ) -> io::Result<()> {
        let mut line = serde_json::json!([
            point.seq,
            point.name,
            point.step,
            point.value.to_string(),
            point.time_ms
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
            pending.push_back(parse(&line)?);
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

fn parse(line: &str) -> io::Result<MetricPoint> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad spool line {line:?}"),
        )
    };
    let fields: Vec<serde_json::Value> = serde_json::from_str(line).map_err(|_| bad())?;
    Ok(MetricPoint {
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
    })
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
                .push(point(seq as u64, *value), &mut pending)
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
        spool.push(point(7, 9.0), &mut pending).expect("push");
        assert_eq!(pending.back().map(|p| p.seq), Some(7));
    }
}
