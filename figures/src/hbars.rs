//! Horizontal bars with interval whiskers, shared by the final-metric and the
//! ablation charts. Horizontal, so long method names stay on one readable line; the
//! names are drawn beside the axis at each bar's centre rather than as mesh labels,
//! because a mesh picks "nice" tick positions that need not fall on the bars.

use crate::render::{shorten, tick, Area, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar, drawn from `base` to `value`, with an optional interval and a note
/// printed right of it.
pub struct HBar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
    pub color: RGBColor,
    pub note: String,
}

pub struct HBarChart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Draw a black line at zero (for differences).
    pub zero_line: bool,
}

/// Draws the bars top to bottom in the order given.
pub fn draw(area: &Area<'_>, chart_text: &HBarChart<'_>, bars: &[HBar]) -> Result<(), String> {
    let titled = area
        .titled(chart_text.title, (FONT, TITLE_SIZE))
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = bars.iter().map(|b| shorten(&b.label, 30)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(8) as u32;
    let (low, high) = x_range(bars);
    let count = bars.len() as f64;
    let mut chart = ChartBuilder::on(&titled)
        .margin(20)
        .margin_right(40)
        .x_label_area_size(60)
        .y_label_area_size((longest * 11 + 60).clamp(140, 420))
        .build_cartesian_2d(low..high, -0.5..count - 0.5)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(chart_text.x_desc)
        .y_desc(chart_text.y_desc)
        .axis_desc_style((FONT, LABEL_SIZE))
        .label_style((FONT, TICK_SIZE))
        .x_label_formatter(&|v| tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    let base = if low <= 0.0 && high >= 0.0 { 0.0 } else { low };
    if chart_text.zero_line {
        let zero = [(0.0, -0.5), (0.0, count - 0.5)];
        chart
            .draw_series(std::iter::once(PathElement::new(
                zero,
                BLACK.stroke_width(2),
            )))
            .map_err(|e| e.to_string())?;
    }
    let name_style =
        TextStyle::from((FONT, TICK_SIZE).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let note_style =
        TextStyle::from((FONT, TICK_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (index, bar) in bars.iter().enumerate() {
        let y = count - 1.0 - index as f64;
        let rect = Rectangle::new(
            [(base, y - 0.32), (bar.value, y + 0.32)],
            bar.color.mix(0.75).filled(),
        );
        chart
            .draw_series(std::iter::once(rect))
            .map_err(|e| e.to_string())?;
        let (lo, hi) = bar.interval.unwrap_or((bar.value, bar.value));
        if bar.interval.is_some() {
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y,
                    lo,
                    bar.value,
                    hi,
                    BLACK.stroke_width(2),
                    16,
                )))
                .map_err(|e| e.to_string())?;
        }
        let note_x = hi.max(bar.value).max(base);
        chart
            .draw_series(std::iter::once(Text::new(
                format!("   {}", bar.note),
                (note_x, y),
                note_style.clone(),
            )))
            .map_err(|e| e.to_string())?;
        // The name sits left of the plotting area, in the root area's pixels.
        let (left, center) = chart.backend_coord(&(low, y));
        area.draw(&Text::new(
            labels[index].clone(),
            (left - 10, center),
            name_style.clone(),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// From zero (or the lowest end) to past the highest end, with room on the right
/// for the notes.
fn x_range(bars: &[HBar]) -> (f64, f64) {
    let ends = bars.iter().flat_map(|b| {
        let (lo, hi) = b.interval.unwrap_or((b.value, b.value));
        [lo, hi, b.value]
    });
    let (low, high) = ends.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (high - low).max(1e-9);
    let low = if low < 0.0 { low - span * 0.06 } else { low };
    (low, high + span * 0.4)
}
