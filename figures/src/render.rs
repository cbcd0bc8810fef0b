//! The drawing surface every chart shares: the embedded font, the palette, a legend
//! panel beside the plot (so it never covers data), and PNG encoding with an atomic
//! replace of the file.

use crate::FiguresError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

/// Every figure's size in pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 720;

pub const FONT: &str = "sans-serif";
pub const TITLE_SIZE: u32 = 30;
pub const LABEL_SIZE: u32 = 22;
pub const TICK_SIZE: u32 = 18;

pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Okabe–Ito, readable by colour-blind readers; repeats after eight series.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Registers DejaVu Sans once per process (plotters looks fonts up by family name).
fn ensure_font() -> Result<(), FiguresError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(FiguresError::Draw {
            figure: "any figure".into(),
            message: "the embedded font did not load".into(),
        })
    }
}

/// Shortens a label to `max` characters with an ellipsis, so legends and axis
/// labels keep their width.
pub fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_owned();
    }
    let kept: String = label.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Draws `entries` (label, colour) as a legend panel in `area`, one line each.
pub fn legend(area: &Area<'_>, title: &str, entries: &[(String, RGBColor)]) -> Result<(), String> {
    let style = (FONT, TICK_SIZE).into_font();
    area.draw(&Text::new(
        title.to_owned(),
        (10, 10),
        (FONT, TICK_SIZE).into_font().style(FontStyle::Bold),
    ))
    .map_err(|e| e.to_string())?;
    for (row, (label, color)) in entries.iter().enumerate() {
        let y = 44 + row as i32 * 28;
        area.draw(&Rectangle::new([(10, y + 2), (34, y + 16)], color.filled()))
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new(shorten(label, 26), (42, y), style.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws with `draw` on a white canvas and writes the PNG atomically.
pub fn write_png(
    path: &Path,
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<(), FiguresError> {
    ensure_font()?;
    let figure = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let draw_error = |message: String| FiguresError::Draw {
        figure: figure.clone(),
        message,
    };
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| draw_error(e.to_string()))?;
        draw(&area).map_err(draw_error)?;
        area.present().map_err(|e| draw_error(e.to_string()))?;
    }
    let mut encoded = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut encoded, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| draw_error(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| draw_error(e.to_string()))?;
    }
    write_atomic(path, &encoded)
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FiguresError> {
    let write_error = |err: std::io::Error| FiguresError::Write {
        path: path.display().to_string(),
        message: err.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(write_error)
}

/// A value for a label: four significant digits, scientific for very small or
/// large magnitudes.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if value != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.3e}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.4}")
    }
}

/// An axis tick: at most four decimals, trailing zeros dropped.
pub fn tick(value: f64) -> String {
    let text = format!("{value:.4}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}
