//! The words of a claim's verdict beyond the test itself: what an inconclusive
//! claim's seeds could detect, and which look of a two-look design judged it.

use crate::stage::across_stages::{seed_ranges, AcrossStage};
use crate::stage::claims::ClaimStatus;
use crate::stage::looks::StageLook;
use crate::stage::summary::analysis::Test;
use crate::stage::summary::render::{interval_json, num};
use crate::stage::summary::text::fmt_interval;
use crate::stage::summary::text::{fmt_diff, fmt_num, fmt_p};
use expcluster_stats::{PowerAnalysis, PowerDesign};
use serde_json::{json, Value};

/// What an inconclusive claim needs: the smallest effect the current seeds detect
/// with 80% power, and the seeds that would detect the effect observed.
pub fn power_sentence(
    power: Option<&PowerAnalysis>,
    test: &Test,
    diff: Option<f64>,
    level: &str,
) -> String {
    let Some(power) = power else {
        return format!(
            "; no power analysis: {} has no spread to standardise by",
            test.method.label()
        );
    };
    let (unit, symbol) = match power.design {
        PowerDesign::Paired => ("pairs", "d_z"),
        PowerDesign::TwoSample { .. } => ("seeds per method", "d"),
    };
    let alpha = level;
    let detectable = match (power.detectable_difference, power.detectable_effect) {
        (Some(difference), Some(effect)) => format!(
            "; with {} {unit} the {} detects a difference of ±{} ({symbol} = {}) with {:.0}% power at {alpha}",
            power.nobs,
            test.method.label(),
            fmt_num(difference),
            fmt_num(effect),
            100.0 * power.target_power
        ),
        _ => String::new(),
    };
    let needed = match (power.seeds_needed, diff) {
        (Some(seeds), Some(diff)) => format!(
            "; detecting the observed {} would take {seeds} {unit} (power now {:.0}%)",
            fmt_diff(diff),
            100.0 * power.power_at_observed
        ),
        _ => "; no difference was observed, so no number of seeds is enough to show one".to_owned(),
    };
    format!("{detectable}{needed}")
}

/// The level the power figures are at, in words: `alpha 0.05`, `alpha 0.05/3
/// (Holm's strictest step)`, or a second look's nominal level.
pub fn power_level_text(
    power_alpha: f64,
    alpha: f64,
    family: usize,
    look: Option<&StageLook>,
) -> String {
    let holm = if family > 1 {
        format!("{}/{family} (Holm's strictest step)", fmt_num(alpha))
    } else {
        fmt_num(alpha)
    };
    match look {
        Some(look) => format!(
            "nominal alpha {} of the second look (alpha {holm}, {})",
            fmt_num(power_alpha),
            look.design.boundary.label()
        ),
        None => format!("alpha {holm}"),
    }
}

/// Which look judged a claim test and at what level, e.g. `look 2 of 2
/// (O'Brien–Fleming, 5 then 10 seeds): nominal alpha 0.0480 here, 0.0052 at look 1
/// (p there 0.2100); sequential p = 0.0310`.
pub fn look_text(
    look: &StageLook,
    alpha: f64,
    p_first: Option<f64>,
    sequential_p: Option<f64>,
) -> String {
    let levels = look.design.nominal_levels(alpha);
    let here = levels.map_or("?".to_owned(), |l| fmt_num(l[usize::from(look.look) - 1]));
    let other = match (look.look, levels) {
        (2, Some([first, _])) => format!(
            ", {} at look 1 (p there {})",
            fmt_num(first),
            p_first.map_or("n/a".to_owned(), fmt_p)
        ),
        (_, Some([_, second])) => format!(", {} at look 2", fmt_num(second)),
        _ => String::new(),
    };
    format!(
        "look {} of 2 ({}, {} then {} seeds): nominal alpha {here} at this look{other}; sequential p = {}",
        look.look,
        look.design.boundary.label(),
        look.design.first_look,
        look.design.max,
        sequential_p.map_or("n/a".to_owned(), fmt_p),
    )
}

/// What an inconclusive claim can still do under a two-look design.
pub fn next_look_text(look: &StageLook, stage: &str, power_at_max: Option<f64>) -> String {
    if look.look == 2 {
        return "; this was the design's last look".to_owned();
    }
    let power = power_at_max.map_or(String::new(), |p| {
        format!(": power then {:.0}% for the observed difference", 100.0 * p)
    });
    format!(
        "; the declared second look (`expcluster submit --stage {stage} --seeds-for-power`) runs {} seeds{power}",
        look.design.max
    )
}

/// One claim test against another stage's verdict, for the sentence: pooled (its
/// numbers and verdict) or reported separately (why).
pub fn across_text(
    across: &AcrossStage<'_>,
    (p_holm, family): (Option<f64>, usize),
    status: Option<ClaimStatus>,
) -> String {
    let other = across.other;
    let there = format!(
        "the {} stage (run {}, {} there)",
        other["stage"].as_str().unwrap_or("?"),
        other["stage_run"],
        other["status"].as_str().unwrap_or("?")
    );
    let Some(pooled) = &across.pooled else {
        return format!(
            "; not pooled with {there}: {}",
            across.reason.as_deref().unwrap_or("no matching test")
        );
    };
    let c = &pooled.comparison;
    let Some(p) = c.p_value else {
        return format!(
            "; pooled with {there} (same job definitions and code): {} not possible on seeds {}",
            c.method.label(),
            seed_ranges(&pooled.seeds)
        );
    };
    let size = match c.n_pairs {
        Some(pairs) => format!("n = {pairs} pairs"),
        None => format!("n = {} vs {}", c.a.n, c.b.n),
    };
    let shared = match pooled.shared.len() {
        0 => String::new(),
        k => format!(
            ", {k} seed{} run in both stages counted once",
            if k == 1 { "" } else { "s" }
        ),
    };
    let differing = if pooled.differing.is_empty() {
        String::new()
    } else {
        format!(
            " ({} {} gave other values there: not deterministic; this stage's are used)",
            if pooled.differing.len() == 1 {
                "seed"
            } else {
                "seeds"
            },
            seed_ranges(&pooled.differing)
        )
    };
    format!(
        "; pooled with {there} (same job definitions and code): {} ({} p = {}, {}; {size} over seeds {}{shared}{differing}) is {}, Holm p = {} over {family} pooled test{}",
        c.mean_diff.map_or("n/a".to_owned(), fmt_diff),
        c.method.label(),
        fmt_p(p),
        c.interval.as_ref().map_or("no interval".to_owned(), fmt_interval),
        seed_ranges(&pooled.seeds),
        status.map_or("inconclusive", ClaimStatus::as_str),
        p_holm.map_or("n/a".to_owned(), fmt_p),
        if family == 1 { "" } else { "s" },
    )
}

/// One claim test against another stage's verdict, for the evidence's `across_stages`.
pub fn across_json(
    across: &AcrossStage<'_>,
    p_holm: Option<f64>,
    status: Option<ClaimStatus>,
) -> Value {
    let other = across.other;
    let mut entry = json!({
        "stage": other["stage"],
        "stage_run": other["stage_run"],
        "event": other["seq"],
        "status_there": other["status"],
        "pooled": across.pooled.is_some(),
        "reason": across.reason,
    });
    if let (Some(pooled), Value::Object(map)) = (&across.pooled, &mut entry) {
        let c = &pooled.comparison;
        map.insert("seeds".into(), json!(pooled.seeds));
        map.insert("shared_seeds".into(), json!(pooled.shared));
        map.insert("differing_seeds".into(), json!(pooled.differing));
        map.insert("test".into(), json!(c.p_value.map(|_| c.method.as_str())));
        map.insert("n_pairs".into(), json!(c.n_pairs));
        map.insert("n_better".into(), json!(c.a.n));
        map.insert("n_than".into(), json!(c.b.n));
        map.insert("mean_diff".into(), num(c.mean_diff));
        map.insert("p_value".into(), num(c.p_value));
        map.insert("p_holm".into(), num(p_holm));
        map.insert("interval".into(), interval_json(c.interval.as_ref()));
        map.insert("status".into(), json!(status));
    }
    entry
}

/// The flag on a verdict that disagrees with another stage's.
pub fn conflict_text(status: &str, conflicts: &[Value]) -> String {
    if conflicts.is_empty() {
        return String::new();
    }
    let others: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "{} in the {} stage (run {}, research_log.jsonl event #{})",
                c["status"].as_str().unwrap_or("?"),
                c["stage"].as_str().unwrap_or("?"),
                c["stage_run"],
                c["event"]
            )
        })
        .collect();
    format!(
        " CONFLICT: {status} here but {}; both verdicts stand, neither replaces the other.",
        others.join(", ")
    )
}
