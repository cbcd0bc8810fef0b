//! A stage's second look at its claims on more seeds (`sequential:` in the stage's
//! config, `expcluster submit --seeds-for-power`), and the rules that keep adding
//! seeds from being a way to fish for significance.
//!
//! A stage with a declared two-look design is judged at look 1 on its `seeds`, at
//! the first look's nominal level (docs/statistics.md). Only then, and only if a
//! claim is inconclusive, may the second look open: the research log gets a
//! `stage_seeds_added` event carrying the design as the first look used it, the stage
//! runs on `max_seeds` (never a number chosen from the first look's effect, which
//! would break the boundaries' error rate), and every later evaluation of the stage is
//! look 2. There is no third look. Everything here is read from the research log and
//! the config, so a restarted coordinator and `expcluster summarize` see the same.

use crate::stage::summary::analysis::{StageAnalysis, Test, SUMMARY_ALPHA};
use expcluster_core::config::{LoadedConfig, SequentialBoundary};
use expcluster_core::Stage;
use expcluster_stats::{compare, Boundary, Comparison, TwoLookDesign};
use serde_json::{json, Value};

/// The research log event that opens a stage's second look.
pub const SEEDS_ADDED_EVENT: &str = "stage_seeds_added";

/// Whether later claim evaluations read events of this type (the coordinator keeps
/// them in memory: see `CoordinatorState::claim_events`).
pub fn is_claim_event(event_type: &str) -> bool {
    matches!(
        event_type,
        "experiment_completed" | "hypothesis_evaluated" | SEEDS_ADDED_EVENT
    )
}

/// The claim events a coordinator keeps (see [`is_claim_event`]), with the
/// `stage_seeds_added` ones (at most one per stage) also kept apart: every submission
/// looks its stage's up, and a scan of every claim event for it grew with each
/// finished stage (about 30 us per submission after a few hundred).
#[derive(Debug, Default, Clone)]
pub struct ClaimEvents {
    all: Vec<Value>,
    seeds_added: Vec<Value>,
}

impl ClaimEvents {
    pub fn push(&mut self, event: Value) {
        if event["type"] == SEEDS_ADDED_EVENT {
            self.seeds_added.push(event.clone());
        }
        self.all.push(event);
    }

    /// Every claim event, oldest first.
    pub fn all(&self) -> &[Value] {
        &self.all
    }

    /// The `stage_seeds_added` events alone, oldest first: enough for
    /// [`stage_look`] and [`seeds_added_event`].
    pub fn seeds_added(&self) -> &[Value] {
        &self.seeds_added
    }
}

impl FromIterator<Value> for ClaimEvents {
    fn from_iter<I: IntoIterator<Item = Value>>(events: I) -> Self {
        let mut kept = Self::default();
        for event in events {
            kept.push(event);
        }
        kept
    }
}

/// Where a stage with a two-look design stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageLook {
    pub design: TwoLookDesign,
    /// 1 or 2.
    pub look: u8,
    /// The stage's first seed: look 1's seeds are `seed_base .. seed_base + first_look`.
    pub seed_base: u64,
}

impl StageLook {
    /// The seeds the stage runs at this look.
    pub fn seeds(&self) -> u32 {
        if self.look == 2 {
            self.design.max
        } else {
            self.design.first_look
        }
    }

    /// Whether `seed` was among the first look's.
    pub fn in_first_look(&self, seed: u64) -> bool {
        seed >= self.seed_base && seed - self.seed_base < u64::from(self.design.first_look)
    }

    /// The design as the research log records it.
    pub fn to_json(&self, alpha: f64) -> Value {
        let levels = self.design.nominal_levels(alpha);
        json!({
            "look": self.look,
            "looks": 2,
            "boundary": self.design.boundary.as_str(),
            "seeds_first_look": self.design.first_look,
            "max_seeds": self.design.max,
            "seed_base": self.seed_base,
            "alpha": alpha,
            "nominal_alpha": levels,
            "nominal_alpha_this_look": levels.map(|l| l[usize::from(self.look) - 1]),
        })
    }
}

pub fn boundary_of(boundary: SequentialBoundary) -> Boundary {
    match boundary {
        SequentialBoundary::ObrienFleming => Boundary::ObrienFleming,
        SequentialBoundary::Pocock => Boundary::Pocock,
    }
}

fn boundary_named(name: &str) -> Option<Boundary> {
    match name {
        "obrien_fleming" => Some(Boundary::ObrienFleming),
        "pocock" => Some(Boundary::Pocock),
        _ => None,
    }
}

/// The `stage_seeds_added` event of `stage`, if its second look was opened.
pub fn seeds_added_event(events: &[Value], stage: Stage) -> Option<&Value> {
    events
        .iter()
        .find(|e| e["type"] == SEEDS_ADDED_EVENT && e["stage"] == stage.as_str())
}

/// Where `stage` stands: look 2 once its second look was opened (with the design
/// that event recorded, whatever the config says now), look 1 when the config
/// declares a design, `None` for a stage of one look.
pub fn stage_look(loaded: &LoadedConfig, stage: Stage, events: &[Value]) -> Option<StageLook> {
    if let Some(event) = seeds_added_event(events, stage) {
        let boundary = event["boundary"].as_str().and_then(boundary_named)?;
        let first = u32::try_from(event["seeds_first_look"].as_u64()?).ok()?;
        let max = u32::try_from(event["max_seeds"].as_u64()?).ok()?;
        return Some(StageLook {
            design: TwoLookDesign::new(boundary, first, max).ok()?,
            look: 2,
            seed_base: event["seed_base"].as_u64()?,
        });
    }
    let spec = loaded.config.stages.get(stage)?;
    let sequential = spec.sequential.as_ref()?;
    Some(StageLook {
        design: TwoLookDesign::new(
            boundary_of(sequential.boundary),
            spec.seeds,
            sequential.max_seeds,
        )
        .ok()?,
        look: 1,
        seed_base: spec.seed_base,
    })
}

/// Refuses a first look at a number of seeds other than the one the stage's earlier
/// evaluations under its design used: raising `seeds` after seeing a verdict is a
/// second look the design did not count (the second look is `--seeds-for-power`).
pub fn check_first_look_seeds(
    loaded: &LoadedConfig,
    stage: Stage,
    events: &[Value],
) -> Result<(), String> {
    check_first_look(stage_look(loaded, stage, events), stage, events)
}

/// [`check_first_look_seeds`] with the stage's look already known (`look`, from
/// [`stage_look`]).
pub fn check_first_look(
    look: Option<StageLook>,
    stage: Stage,
    events: &[Value],
) -> Result<(), String> {
    let Some(look) = look.filter(|look| look.look == 1) else {
        return Ok(());
    };
    let earlier = events.iter().find(|e| {
        e["type"] == "hypothesis_evaluated"
            && e["stage"] == stage.as_str()
            && e["sequential"]["look"] == 1
            && e["sequential"]["seeds_first_look"] != look.design.first_look
    });
    match earlier {
        Some(event) => Err(format!(
            "stage {stage}'s claims were judged at a first look of {} seeds (research_log.jsonl event #{}); config.yaml now says {}: changing the seeds after a look is a look the design does not count. Restore `seeds: {}` and open the declared second look with `expcluster submit --stage {stage} --seeds-for-power`",
            event["sequential"]["seeds_first_look"],
            event["seq"],
            look.design.first_look,
            event["sequential"]["seeds_first_look"],
        )),
        None => Ok(()),
    }
}

/// What opening a stage's second look records.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondLook {
    pub look: StageLook,
    /// The `stage_seeds_added` payload.
    pub payload: Value,
    /// One line for the researcher: the seeds, the claims, the levels.
    pub note: String,
}

/// Plans the second look of `stage` from the research log: refused (with what to do
/// instead) for a stage without a declared design, a stage whose first look was not
/// judged under it, a stage with no inconclusive claim, and a third look.
pub fn plan_second_look(
    loaded: &LoadedConfig,
    stage: Stage,
    events: &[Value],
) -> Result<SecondLook, String> {
    if let Some(event) = seeds_added_event(events, stage) {
        return Err(format!(
            "stage {stage} already had its second and last look (seeds {} → {}, research_log.jsonl event #{}): the design declares two looks, and a third would break its error rate; report the second look's verdicts, or plan a new experiment with its own design",
            event["seeds_first_look"], event["max_seeds"], event["seq"]
        ));
    }
    let Some(look) = stage_look(loaded, stage, events) else {
        return Err(format!(
            "stage {stage} declares no second look: its claims were judged once at their full alpha, and testing them again on more seeds would raise the false-positive rate (looking twice). Declare the design before the stage's first run, e.g. `{stage}: {{seeds: 5, sequential: {{max_seeds: 10}}}}` in config.yaml (the first look is then judged at the stricter O'Brien–Fleming level; docs/statistics.md)"
        ));
    };
    let last_run = events
        .iter()
        .rev()
        .find(|e| e["type"] == "experiment_completed" && e["stage"] == stage.as_str())
        .and_then(|e| e["stage_run"].as_u64())
        .ok_or_else(|| {
            format!("stage {stage} has not finished a run: run its first look with `expcluster submit --stage {stage}`")
        })?;
    let evaluations: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["type"] == "hypothesis_evaluated"
                && e["stage"] == stage.as_str()
                && e["stage_run"].as_u64() == Some(last_run)
        })
        .collect();
    if evaluations.is_empty() {
        return Err(format!(
            "no claim was evaluated in stage {stage}'s last run ({last_run}): there is nothing to add seeds for"
        ));
    }
    let judged = |e: &&Value| {
        e["sequential"]["look"] == 1
            && e["sequential"]["seeds_first_look"] == look.design.first_look
            && e["sequential"]["max_seeds"] == look.design.max
            && e["sequential"]["boundary"] == look.design.boundary.as_str()
    };
    if let Some(unjudged) = evaluations.iter().find(|e| !judged(e)) {
        return Err(format!(
            "stage {stage}'s first look (run {last_run}, research_log.jsonl event #{}) was not judged under the design config.yaml declares now ({} seeds, then {}, {}): a design declared after seeing the data does not protect against fishing. Submit the stage again to judge its first look under the design, then ask for the second",
            unjudged["seq"],
            look.design.first_look,
            look.design.max,
            look.design.boundary.label()
        ));
    }
    let inconclusive: Vec<&&Value> = evaluations
        .iter()
        .filter(|e| e["status"] == "inconclusive")
        .collect();
    if inconclusive.is_empty() {
        return Err(format!(
            "no claim is inconclusive after stage {stage}'s first look (run {last_run}): every claim has its verdict, so there is nothing to add seeds for"
        ));
    }
    let second = StageLook { look: 2, ..look };
    let claims: Vec<Value> = inconclusive
        .iter()
        .map(|e| {
            let needed: Vec<&Value> = e["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|point| &point["power"]["seeds_needed"])
                .collect();
            json!({
                "claim": e["claim"],
                "alpha": e["alpha"],
                "event": e["seq"],
                "seeds_needed": needed,
                "power_at_max_seeds": e["evidence"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|point| point["sequential"]["power_at_max_seeds"].clone())
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let names: Vec<String> = claims
        .iter()
        .map(|c| {
            let needed: Vec<String> = c["seeds_needed"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n.as_u64().map_or("?".to_owned(), |n| n.to_string()))
                .collect();
            format!(
                "{} (seeds needed for the observed difference: {})",
                c["claim"].as_str().unwrap_or("?"),
                needed.join(", ")
            )
        })
        .collect();
    let alpha = inconclusive
        .first()
        .and_then(|e| e["alpha"].as_f64())
        .unwrap_or(0.05);
    let levels = second
        .design
        .nominal_levels(alpha)
        .map_or("?".to_owned(), |[first, second]| {
            format!("{second:.4} (the first look's was {first:.4})")
        });
    let note = format!(
        "look 2 of 2 for stage {stage}: seeds {} → {} (the declared max_seeds; a number chosen from the first look's effect would raise the false-positive rate) for the inconclusive claim(s) {}; at alpha {alpha} the {} boundary judges this look at nominal alpha {levels}",
        second.design.first_look,
        second.design.max,
        names.join(", "),
        second.design.boundary.label(),
    );
    let mut payload = second.to_json(alpha);
    if let Value::Object(map) = &mut payload {
        map.insert("stage".into(), json!(stage));
        map.insert("first_look_run".into(), json!(last_run));
        map.insert("claims".into(), Value::Array(claims));
        map.insert("note".into(), json!(note));
    }
    Ok(SecondLook {
        look: second,
        payload,
        note,
    })
}

/// One claim test judged across the looks: the p-values of each look and the
/// sequential p-value Holm's procedure takes.
#[derive(Debug, Clone)]
pub struct LookedTest {
    /// Look 1's comparison (better − than, on the first look's seeds), at look 2.
    pub first_look: Option<Comparison>,
    /// The first look's p-value (at look 1, the stage's own).
    pub p_first: Option<f64>,
    /// The smallest alpha at which the design rejects by this look.
    pub sequential_p: Option<f64>,
    /// At look 2: whether the first look alone gives `sequential_p` (the verdict then
    /// follows the first look's direction, as a trial stopped there would have).
    pub decided_at_first: bool,
}

/// Judges a claim's comparison (`test`, between groups `better` and `than`) across
/// the looks of `look`.
pub fn looked_test(
    analysis: &StageAnalysis,
    look: &StageLook,
    metric: &str,
    (better, than): (usize, usize),
    test: &Test,
) -> LookedTest {
    if look.look == 1 {
        return LookedTest {
            first_look: None,
            p_first: test.p_value,
            sequential_p: look.design.sequential_p_value(test.p_value, None),
            decided_at_first: true,
        };
    }
    let first_values = |group: usize| -> Vec<f64> {
        let group = &analysis.groups[group];
        group
            .seeds
            .iter()
            .zip(group.values(metric))
            .filter(|(seed, _)| look.in_first_look(**seed))
            .map(|(_, value)| *value)
            .collect()
    };
    let first_look = compare(
        &first_values(better),
        &first_values(than),
        test.method,
        1.0 - SUMMARY_ALPHA,
    )
    .ok();
    let p_first = first_look.as_ref().and_then(|c| c.p_value);
    let from_first = look.design.sequential_p_value(p_first, None);
    let sequential_p = look.design.sequential_p_value(p_first, test.p_value);
    LookedTest {
        first_look,
        p_first,
        sequential_p,
        decided_at_first: from_first.is_some() && from_first == sequential_p,
    }
}

#[cfg(test)]
#[path = "looks_tests.rs"]
mod tests;
