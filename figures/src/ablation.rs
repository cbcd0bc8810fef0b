//! The ablation impact chart: for each ablation, the change of the primary metric
//! against the unablated proposed method run in the same stage (ablation minus
//! reference, paired by seed when both have every seed), with the 95% interval the
//! summary's test implies (paired t, else Welch–Satterthwaite) from the statistics
//! crate.

use crate::data::{array_path, proposed_method, read_1d, ArrayEntry, ArrayKind, Primary};
use crate::hbars::{self, HBar, HBarChart};
use crate::render::{number, write_png, Area};
use crate::FiguresError;
use expcluster_stats::TestMethod;
use plotters::style::RGBColor;
use std::path::Path;

/// The figure's file, relative to the workspace.
pub const FILE: &str = "figures/ablation_impact.png";

struct Impact {
    label: String,
    diff: f64,
    interval: Option<(f64, f64)>,
}

pub fn write(
    workspace: &Path,
    entries: &[ArrayEntry],
    primary: Option<&Primary>,
) -> Result<Vec<String>, FiguresError> {
    let finals: Vec<&ArrayEntry> = entries
        .iter()
        .filter(|e| e.kind == ArrayKind::FinalPerSeed)
        .collect();
    let Some(metric) = primary
        .map(|p| p.name.clone())
        .or_else(|| finals.first().map(|e| e.metric.clone()))
    else {
        return Ok(Vec::new());
    };
    let of_metric: Vec<&&ArrayEntry> = finals.iter().filter(|e| e.metric == metric).collect();
    let reference_name = proposed_method(workspace);
    let reference = match &reference_name {
        Some(name) => of_metric.iter().find(|e| &e.variant == name),
        None => of_metric.first(),
    };
    let Some(reference) = reference else {
        return Ok(Vec::new());
    };
    let reference_values = read_1d(&array_path(workspace, reference))?;
    let mut impacts = Vec::new();
    for entry in of_metric.iter().filter(|e| e.variant != reference.variant) {
        let values = read_1d(&array_path(workspace, entry))?;
        let method = if values.len() == reference_values.len() {
            TestMethod::PairedT
        } else {
            TestMethod::Welch
        };
        let Ok(comparison) = expcluster_stats::compare(&values, &reference_values, method, 0.95)
        else {
            continue;
        };
        let Some(diff) = comparison.mean_diff else {
            continue;
        };
        let interval = comparison
            .interval
            .map(|interval| (interval.low, interval.high));
        impacts.push(Impact {
            label: entry.label(),
            diff,
            interval,
        });
    }
    if impacts.is_empty() {
        return Ok(Vec::new());
    }
    let higher_is_better = primary.is_none_or(|p| p.higher_is_better);
    let title = format!("Ablation impact on {metric} against {}", reference.variant);
    write_png(&workspace.join(FILE), |area| {
        draw(
            area,
            &title,
            &metric,
            &reference.variant,
            higher_is_better,
            &impacts,
        )
    })?;
    Ok(vec![FILE.to_owned()])
}

fn draw(
    area: &Area<'_>,
    title: &str,
    metric: &str,
    reference: &str,
    higher_is_better: bool,
    impacts: &[Impact],
) -> Result<(), String> {
    let rows: Vec<HBar> = impacts
        .iter()
        .map(|impact| {
            let hurts = (impact.diff < 0.0) == higher_is_better;
            let (color, verdict) = if hurts {
                (RGBColor(213, 94, 0), "worse")
            } else {
                (RGBColor(0, 114, 178), "better")
            };
            HBar {
                label: impact.label.clone(),
                value: impact.diff,
                interval: impact.interval,
                color,
                note: format!("{} ({verdict})", number(impact.diff)),
            }
        })
        .collect();
    let better = if higher_is_better { "higher" } else { "lower" };
    let x_desc = format!("change in final {metric} (ablation − {reference}; whisker: 95% t interval; {better} is better)");
    hbars::draw(
        area,
        &HBarChart {
            title,
            x_desc: &x_desc,
            y_desc: "ablation",
            zero_line: true,
        },
        &rows,
    )
}
