//! The words of a claim's verdict beyond the test itself: what an inconclusive
//! claim's seeds could detect, and which look of a two-look design judged it.

use crate::stage::looks::StageLook;
use crate::stage::summary::analysis::Test;
use crate::stage::summary::text::{fmt_diff, fmt_num, fmt_p};
use expcluster_stats::{PowerAnalysis, PowerDesign};

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
