//! A claim's evidence across stages: a claim tested in the baselines stage and again
//! in the full stage is reported per stage and, where both stages ran the same
//! experiment, pooled; verdicts that disagree are flagged, never overwritten.
//!
//! - Each claim test records its data in its evidence (`data`: every seed's value of
//!   both sides) with the *configuration fingerprint* of each side
//!   ([`configuration_fingerprint`]: the resolved job and the code, not the stage or
//!   the seed), so a later stage can pool it from the research log alone.
//! - A later stage's claim test is pooled with an earlier stage's when both sides'
//!   fingerprints match: the union of the seeds, tested with the later stage's test.
//!   A seed run in both stages is the same job run twice (same fingerprint, same
//!   seed), so it counts once (the later stage's value). Pooled tests are corrected
//!   with Holm among themselves, at the claim's alpha; they report what all the seeds
//!   say and decide nothing: the stage's verdict drives the idea.
//! - Otherwise the stages are reported separately, with the reason (the code changed,
//!   or which side's job definition differs).
//! - A claim supported in one stage and contradicted in another carries `conflicts`
//!   (the other verdicts, with their events) and a sentence saying both stand.

use crate::stage::summary::analysis::{Group, StageAnalysis};
use crate::stage::summary::render::num;
use expcluster_core::expand::configuration_fingerprint;
use expcluster_core::Stage;
use expcluster_stats::{compare, Comparison, TestMethod};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One side of a claim test: its configuration and its values by seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SideData {
    pub configuration: String,
    /// Seed → value (NaN: a failed seed).
    pub values: BTreeMap<u64, f64>,
}

impl SideData {
    pub fn of(group: &Group, metric: &str, code_digest: &str) -> Self {
        SideData {
            configuration: configuration_fingerprint(&group.resolved, code_digest),
            values: group
                .seeds
                .iter()
                .copied()
                .zip(group.values(metric).iter().copied())
                .collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "configuration": self.configuration,
            "seeds": self.values.keys().collect::<Vec<_>>(),
            "values": self.values.values().map(|v| num(Some(*v))).collect::<Vec<_>>(),
        })
    }

    fn from_json(value: &Value) -> Option<Self> {
        let seeds = value["seeds"].as_array()?;
        let values = value["values"].as_array()?;
        if seeds.len() != values.len() {
            return None;
        }
        Some(SideData {
            configuration: value["configuration"].as_str()?.to_owned(),
            values: seeds
                .iter()
                .zip(values)
                .map(|(seed, v)| Some((seed.as_u64()?, v.as_f64().unwrap_or(f64::NAN))))
                .collect::<Option<_>>()?,
        })
    }
}

/// Both sides of a claim test, oriented better − than.
#[derive(Debug, Clone, PartialEq)]
pub struct PointData {
    pub better: SideData,
    pub than: SideData,
}

impl PointData {
    pub fn of(
        analysis: &StageAnalysis,
        metric: &str,
        (better, than): (usize, usize),
        code_digest: &str,
    ) -> Self {
        PointData {
            better: SideData::of(&analysis.groups[better], metric, code_digest),
            than: SideData::of(&analysis.groups[than], metric, code_digest),
        }
    }

    /// The evidence's `data`.
    pub fn to_json(&self) -> Value {
        json!({"better": self.better.to_json(), "than": self.than.to_json()})
    }

    fn from_evidence(evidence: &Value) -> Option<Self> {
        Some(PointData {
            better: SideData::from_json(&evidence["data"]["better"])?,
            than: SideData::from_json(&evidence["data"]["than"])?,
        })
    }

    fn same_configuration(&self, other: &PointData) -> bool {
        self.better.configuration == other.better.configuration
            && self.than.configuration == other.than.configuration
    }
}

/// The latest verdict of claim `claim` in each stage other than `stage`, oldest stage
/// first.
pub fn other_stage_verdicts<'a>(earlier: &'a [Value], claim: &str, stage: Stage) -> Vec<&'a Value> {
    let mut latest: Vec<&Value> = Vec::new();
    for event in earlier.iter().filter(|e| {
        e["type"] == "hypothesis_evaluated" && e["claim"] == claim && e["stage"] != stage.as_str()
    }) {
        match latest
            .iter_mut()
            .find(|kept| kept["stage"] == event["stage"])
        {
            Some(kept) => *kept = event,
            None => latest.push(event),
        }
    }
    latest
}

/// One claim test of this stage against one earlier stage's verdict.
#[derive(Debug, Clone)]
pub struct AcrossStage<'a> {
    pub other: &'a Value,
    pub pooled: Option<Pooled>,
    /// Why the stages are reported separately, when they are.
    pub reason: Option<String>,
}

/// A pooled test: both stages' seeds together.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub comparison: Comparison,
    pub seeds: Vec<u64>,
    /// Seeds both stages ran (counted once).
    pub shared: Vec<u64>,
    /// Shared seeds whose values differ between the stages (a job that is not
    /// deterministic); the later stage's value is used.
    pub differing: Vec<u64>,
}

/// Pools `current` with the matching claim test of the `other` stage's verdict, or
/// says why it cannot.
pub fn pool<'a>(
    current: &PointData,
    method: TestMethod,
    confidence: f64,
    code_digest: &str,
    other: &'a Value,
) -> AcrossStage<'a> {
    let candidates: Vec<PointData> = other["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(PointData::from_evidence)
        .collect();
    let Some(matching) = candidates.iter().find(|c| c.same_configuration(current)) else {
        let reason = separate_reason(current, &candidates, code_digest, other);
        return AcrossStage {
            other,
            pooled: None,
            reason: Some(reason),
        };
    };
    let mut shared = Vec::new();
    let mut differing = Vec::new();
    let mut union = |earlier: &SideData, later: &SideData| -> BTreeMap<u64, f64> {
        let mut values = earlier.values.clone();
        for (seed, value) in &later.values {
            if let Some(before) = values.insert(*seed, *value) {
                if !shared.contains(seed) {
                    shared.push(*seed);
                }
                let same = before == *value || (before.is_nan() && value.is_nan());
                if !same && !differing.contains(seed) {
                    differing.push(*seed);
                }
            }
        }
        values
    };
    let better = union(&matching.better, &current.better);
    let than = union(&matching.than, &current.than);
    let (a, b, seeds): (Vec<f64>, Vec<f64>, Vec<u64>) = if method.is_paired() {
        // Pairs over the seeds both sides have (both sides share their seeds in a stage).
        let seeds: Vec<u64> = better
            .keys()
            .filter(|s| than.contains_key(s))
            .copied()
            .collect();
        (
            seeds.iter().map(|s| better[s]).collect(),
            seeds.iter().map(|s| than[s]).collect(),
            seeds,
        )
    } else {
        let mut seeds: Vec<u64> = better.keys().chain(than.keys()).copied().collect();
        seeds.sort_unstable();
        seeds.dedup();
        (
            better.into_values().collect(),
            than.into_values().collect(),
            seeds,
        )
    };
    shared.sort_unstable();
    differing.sort_unstable();
    AcrossStage {
        other,
        pooled: compare(&a, &b, method, confidence)
            .ok()
            .map(|comparison| Pooled {
                comparison,
                seeds,
                shared,
                differing,
            }),
        reason: None,
    }
}

fn separate_reason(
    current: &PointData,
    candidates: &[PointData],
    code_digest: &str,
    other: &Value,
) -> String {
    if candidates.is_empty() {
        return "its evaluation there does not record its seeds' values".to_owned();
    }
    if other["code_digest"]
        .as_str()
        .is_some_and(|digest| digest != code_digest)
    {
        return "the code changed between the stages".to_owned();
    }
    let better = candidates
        .iter()
        .any(|c| c.better.configuration == current.better.configuration);
    let than = candidates
        .iter()
        .any(|c| c.than.configuration == current.than.configuration);
    match (better, than) {
        (false, false) => "both methods' job definitions differ between the stages",
        (false, true) => "the better-claimed method's job definition differs between the stages",
        (true, false) => "the other method's job definition differs between the stages",
        (true, true) => "no sweep point there ran both methods as they ran here",
    }
    .to_owned()
}

/// The verdicts of other stages that disagree with `status` (supported against
/// contradicted), for the event's `conflicts`.
pub fn conflicts(status: &str, others: &[&Value]) -> Vec<Value> {
    let opposite = match status {
        "supported" => "contradicted",
        "contradicted" => "supported",
        _ => return Vec::new(),
    };
    others
        .iter()
        .filter(|other| other["status"] == opposite)
        .map(|other| {
            json!({
                "stage": other["stage"],
                "stage_run": other["stage_run"],
                "status": other["status"],
                "event": other["seq"],
            })
        })
        .collect()
}

/// A seed list for prose: `0–7`, or `0–3, 10–13`.
pub fn seed_ranges(seeds: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < seeds.len() {
        let start = seeds[index];
        let mut end = start;
        while index + 1 < seeds.len() && seeds[index + 1] == end + 1 {
            index += 1;
            end = seeds[index];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        index += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
#[path = "across_stages_tests.rs"]
mod tests;
