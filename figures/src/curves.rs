//! Learning curves: per method (and sweep point), the mean over seeds at each step
//! with a ±1 std band, one figure per stage and metric.

use crate::data::{array_path, read_2d, ArrayEntry, ArrayKind};
use crate::render::{
    color, legend, write_png, Area, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE, WIDTH,
};
use crate::FiguresError;
use expcluster_core::Stage;
use plotters::prelude::*;
use std::path::Path;

/// One point of a curve: the step, the mean over the seeds that reached it, and the
/// sample std (ddof = 1) when at least two did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub step: usize,
    pub mean: f64,
    pub std: Option<f64>,
}

/// Mean ± std per step over the finite values of each column (seeds × steps; NaN is
/// padding or a failed seed).
pub fn band(rows: &[Vec<f64>]) -> Vec<BandPoint> {
    let steps = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..steps)
        .filter_map(|step| {
            let column: Vec<f64> = rows
                .iter()
                .filter_map(|row| row.get(step).copied())
                .filter(|v| v.is_finite())
                .collect();
            let described = expcluster_stats::describe(&column);
            Some(BandPoint {
                step,
                mean: described.mean?,
                std: described.std,
            })
        })
        .collect()
}

struct Curve {
    label: String,
    points: Vec<BandPoint>,
}

/// Writes `figures/<stage>_<metric>_curves.png` for every metric with curves.
pub fn write(
    workspace: &Path,
    stage: Stage,
    entries: &[ArrayEntry],
) -> Result<Vec<String>, FiguresError> {
    let mut metrics: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == ArrayKind::Curves)
        .map(|e| e.metric.as_str())
        .collect();
    metrics.sort_unstable();
    metrics.dedup();
    let mut written = Vec::new();
    for metric in metrics {
        let mut curves = Vec::new();
        for entry in entries
            .iter()
            .filter(|e| e.kind == ArrayKind::Curves && e.metric == metric)
        {
            let rows = read_2d(&array_path(workspace, entry))?;
            let seeds = rows
                .iter()
                .filter(|row| row.iter().any(|v| v.is_finite()))
                .count();
            let points = band(&rows);
            if !points.is_empty() {
                curves.push(Curve {
                    label: format!("{} (n={seeds})", entry.label()),
                    points,
                });
            }
        }
        if curves.is_empty() {
            continue;
        }
        let relative = format!("figures/{}_{metric}_curves.png", stage.as_str());
        let title = format!("{stage} stage: {metric} per step, mean ± 1 std over seeds");
        write_png(&workspace.join(&relative), |area| {
            draw(area, &title, metric, &curves)
        })?;
        written.push(relative);
    }
    Ok(written)
}

fn draw(area: &Area<'_>, title: &str, metric: &str, curves: &[Curve]) -> Result<(), String> {
    let area = area
        .titled(title, (FONT, TITLE_SIZE))
        .map_err(|e| e.to_string())?;
    let (plot, side) = area.split_horizontally(WIDTH - 300);
    let last_step = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.step))
        .max()
        .unwrap_or(1)
        .max(1);
    let (low, high) = value_range(curves);
    let mut chart = ChartBuilder::on(&plot)
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(1f64..(last_step + 1) as f64, low..high)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step (k-th reported value of the metric, from 1)")
        .x_label_formatter(&|step| format!("{step:.0}"))
        .y_desc(format!("{metric} (mean ± 1 std)"))
        .axis_desc_style((FONT, LABEL_SIZE))
        .label_style((FONT, TICK_SIZE))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, curve) in curves.iter().enumerate() {
        let color = color(index);
        let upper = curve
            .points
            .iter()
            .filter_map(|p| p.std.map(|s| (p.step as f64 + 1.0, p.mean + s)));
        let lower: Vec<(f64, f64)> = curve
            .points
            .iter()
            .filter_map(|p| p.std.map(|s| (p.step as f64 + 1.0, p.mean - s)))
            .collect();
        let outline: Vec<(f64, f64)> = upper.chain(lower.into_iter().rev()).collect();
        if outline.len() >= 4 {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.18).filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        let line = curve.points.iter().map(|p| (p.step as f64 + 1.0, p.mean));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(3)))
            .map_err(|e| e.to_string())?;
    }
    let entries: Vec<(String, RGBColor)> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| (c.label.clone(), color(i)))
        .collect();
    legend(&side.margin(30, 0, 10, 0), "method (seeds)", &entries)
}

fn value_range(curves: &[Curve]) -> (f64, f64) {
    let values = curves.iter().flat_map(|c| {
        c.points
            .iter()
            .flat_map(|p| [p.mean - p.std.unwrap_or(0.0), p.mean + p.std.unwrap_or(0.0)])
    });
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if high > low {
        (high - low) * 0.06
    } else {
        low.abs().max(1.0) * 0.1
    };
    (low - pad, high + pad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::band;

    #[test]
    fn the_band_skips_padding_and_needs_two_seeds_for_a_std() {
        let rows = vec![vec![1.0, 2.0, 3.0], vec![3.0, 4.0, f64::NAN]];
        let points = band(&rows);
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].mean, 2.0);
        assert!((points[0].std.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(points[2].mean, 3.0);
        assert_eq!(points[2].std, None);
    }
}
