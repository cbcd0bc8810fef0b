//! A batch of metric points made ready for the state lock: checked, and formatted as
//! the attempt's spool lines, before the lock is taken.
//!
//! Ingestion's per-point work (bounds and name checks, number formatting) used to run
//! under the coordinator's one state mutex; `perf` on the ingestion benchmark put the
//! float and integer formatting alone at about a fifth of the coordinator's CPU. Done
//! here, outside the lock, it runs on every core at once, and the lock covers only the
//! sequence check, one `write` and the series update. Numbers are written with `ryu`
//! and `itoa` (the formatters serde_json itself uses), a few times faster than
//! `core::fmt`; replay parses them back bit for bit.

use crate::error::CoordinatorError;
use crate::state::reports::MetricPoint;
use std::ops::Range;

/// Largest series index accepted (a guard against a hostile `step`).
pub const MAX_STEP: u64 = 10_000_000;

/// Checked points and their spool lines, one after another in `lines`.
#[derive(Debug)]
pub struct PreparedPoints {
    pub points: Vec<MetricPoint>,
    lines: Vec<u8>,
    /// Where each point's line ends in `lines`.
    ends: Vec<usize>,
}

impl PreparedPoints {
    /// Checks every point (a bad one refuses the whole batch) and formats its line.
    pub fn new(points: Vec<MetricPoint>) -> Result<Self, CoordinatorError> {
        let mut lines = Vec::with_capacity(points.len() * 40);
        let mut ends = Vec::with_capacity(points.len());
        for point in &points {
            if point.step > MAX_STEP || !expcluster_core::metric_line::is_metric_name(&point.name) {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "metric point {} ({:?}, step {}) is out of bounds",
                    point.seq, point.name, point.step
                )));
            }
            push_spool_line(&mut lines, point.seq, &point.name, point.step, point.value);
            ends.push(lines.len());
        }
        Ok(Self {
            points,
            lines,
            ends,
        })
    }

    /// The spool lines of the points at `indices` (ascending): one slice when they
    /// are consecutive, as in every batch a worker sends.
    pub fn lines_of(&self, indices: &[usize]) -> std::borrow::Cow<'_, [u8]> {
        let line = |i: usize| -> Range<usize> {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            start..self.ends[i]
        };
        match (indices.first(), indices.last()) {
            (Some(&first), Some(&last)) if last - first + 1 == indices.len() => {
                std::borrow::Cow::Borrowed(&self.lines[line(first).start..line(last).end])
            }
            _ => std::borrow::Cow::Owned(
                indices
                    .iter()
                    .flat_map(|&i| self.lines[line(i)].iter().copied())
                    .collect(),
            ),
        }
    }
}

/// Appends one spool line, `[seq,"name",step,"value"]`, to `out`. `name` must already
/// be a valid metric name (letters, digits, `_ . / -`: nothing JSON would escape).
fn push_spool_line(out: &mut Vec<u8>, seq: u64, name: &str, step: u64, value: f64) {
    let mut integers = itoa::Buffer::new();
    let mut float = ryu::Buffer::new();
    out.push(b'[');
    out.extend_from_slice(integers.format(seq).as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(integers.format(step).as_bytes());
    out.extend_from_slice(b",\"");
    // `format` writes NaN, inf and -inf for the non-finite values, which replay's
    // `str::parse::<f64>` reads back.
    out.extend_from_slice(float.format(value).as_bytes());
    out.extend_from_slice(b"\"]\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn point(seq: u64, name: &str, value: f64) -> MetricPoint {
        MetricPoint {
            seq,
            name: name.to_owned(),
            step: seq,
            value,
        }
    }

    #[test]
    fn spool_lines_are_json_and_give_back_every_value_bit_for_bit() {
        let values = [
            0.5,
            1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e-300,
            1e300,
            0.1 + 0.2,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
        ];
        for (seq, value) in values.into_iter().enumerate() {
            let seq = seq as u64;
            let prepared = PreparedPoints::new(vec![point(seq, "train/loss.v-2_x", value)])
                .expect("a valid point");
            let line = prepared.lines_of(&[0]);
            let fields: Value = serde_json::from_slice(&line).expect("the line is JSON");
            assert_eq!(fields[0], seq);
            assert_eq!(fields[1], "train/loss.v-2_x");
            assert_eq!(fields[2], seq);
            let back: f64 = fields[3]
                .as_str()
                .expect("a string")
                .parse()
                .expect("a float");
            assert!(
                back.to_bits() == value.to_bits() || (back.is_nan() && value.is_nan()),
                "{value} came back as {back}"
            );
        }
    }

    #[test]
    fn consecutive_points_share_one_slice_and_others_are_joined_in_order() {
        let points = (0..4).map(|seq| point(seq, "loss", seq as f64)).collect();
        let prepared = PreparedPoints::new(points).expect("valid points");
        let all = prepared.lines_of(&[0, 1, 2, 3]);
        assert!(matches!(all, std::borrow::Cow::Borrowed(_)));
        assert_eq!(String::from_utf8_lossy(&all).lines().count(), 4);
        let some = prepared.lines_of(&[1, 3]);
        let text = String::from_utf8_lossy(&some).into_owned();
        assert_eq!(text, "[1,\"loss\",1,\"1.0\"]\n[3,\"loss\",3,\"3.0\"]\n");
        assert!(prepared.lines_of(&[]).is_empty());
    }

    #[test]
    fn a_bad_name_or_step_refuses_the_batch() {
        for bad in [
            point(0, "", 1.0),
            point(0, "has space", 1.0),
            point(0, "quo\"te", 1.0),
            MetricPoint {
                step: MAX_STEP + 1,
                ..point(0, "loss", 1.0)
            },
        ] {
            let batch = vec![point(1, "loss", 1.0), bad];
            assert!(matches!(
                PreparedPoints::new(batch),
                Err(CoordinatorError::InvalidRequest(_))
            ));
        }
    }
}
