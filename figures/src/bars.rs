//! Final-metric bars: per method (and sweep point), the mean of the per-seed final
//! values with its 95% Student-t interval, as horizontal bars so long method names
//! stay readable.

use crate::data::{array_path, read_1d, ArrayEntry, ArrayKind, Primary};
use crate::hbars::{self, HBar, HBarChart};
use crate::render::{color, number, write_png, Area};
use crate::FiguresError;
use expcluster_core::Stage;
use std::path::Path;

/// One bar: a label, the mean, the interval (when n ≥ 2), n and the failed seeds.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub mean: f64,
    pub interval: Option<(f64, f64)>,
    pub n: usize,
    pub failed: usize,
}

/// Writes `figures/<stage>_<metric>_final.png` for the primary metric (or the first
/// metric with per-seed values when the config does not load).
pub fn write(
    workspace: &Path,
    stage: Stage,
    entries: &[ArrayEntry],
    primary: Option<&Primary>,
) -> Result<Vec<String>, FiguresError> {
    let finals: Vec<&ArrayEntry> = entries
        .iter()
        .filter(|e| e.kind == ArrayKind::FinalPerSeed)
        .collect();
    let metric = match primary {
        Some(primary) if finals.iter().any(|e| e.metric == primary.name) => primary.name.clone(),
        _ => match finals.first() {
            Some(entry) => entry.metric.clone(),
            None => return Ok(Vec::new()),
        },
    };
    let mut bars = Vec::new();
    for entry in finals.iter().filter(|e| e.metric == metric) {
        let values = read_1d(&array_path(workspace, entry))?;
        let described = expcluster_stats::describe(&values);
        let Some(mean) = described.mean else { continue };
        let interval = described.ci95_low.zip(described.ci95_high);
        bars.push(Bar {
            label: entry.label(),
            mean,
            interval,
            n: described.n,
            failed: described.n_nan,
        });
    }
    if bars.is_empty() {
        return Ok(Vec::new());
    }
    let relative = format!("figures/{}_{metric}_final.png", stage.as_str());
    let title = format!("{stage} stage: final {metric}, mean with 95% CI over seeds");
    write_png(&workspace.join(&relative), |area| {
        draw(area, &title, &metric, &bars)
    })?;
    Ok(vec![relative])
}

fn draw(area: &Area<'_>, title: &str, metric: &str, bars: &[Bar]) -> Result<(), String> {
    let rows: Vec<HBar> = bars
        .iter()
        .enumerate()
        .map(|(index, bar)| {
            let failed = if bar.failed > 0 {
                format!(", {} failed", bar.failed)
            } else {
                String::new()
            };
            HBar {
                label: bar.label.clone(),
                value: bar.mean,
                interval: bar.interval,
                color: color(index),
                note: format!("{} (n={}{failed})", number(bar.mean), bar.n),
            }
        })
        .collect();
    let x_desc = format!("final {metric} (bar: mean over seeds; whisker: 95% CI)");
    hbars::draw(
        area,
        &HBarChart {
            title,
            x_desc: &x_desc,
            y_desc: "method",
            zero_line: false,
        },
        &rows,
    )
}
