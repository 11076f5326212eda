//! Charts as SVG and PNG, one implementation for every figure the tools draw
//! (training curves, scaling-law fits). The SVG is written by hand (no dependency);
//! the PNG is the same SVG rasterised by `resvg`, with text in the system's fonts
//! (DejaVu on Debian: `fonts-dejavu-core`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use realsyn_io::fs::write_atomic;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    Line,
    Dashed,
    Points,
    LineAndPoints,
}

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, axis labels and its series on shared axes.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

pub const PALETTE: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

const W: f64 = 380.0;
const H: f64 = 270.0;
const PAD_L: f64 = 58.0;
const PAD_R: f64 = 14.0;
const PAD_T: f64 = 28.0;
const PAD_B: f64 = 42.0;

/// Panels side by side, as an SVG document.
pub fn to_svg(panels: &[Panel]) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}" font-family="DejaVu Sans, sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"##,
        W * panels.len().max(1) as f64
    );
    for (i, p) in panels.iter().enumerate() {
        draw_panel(&mut svg, p, i as f64 * W);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(svg: &mut String, p: &Panel, x0: f64) {
    let all = || p.series.iter().flat_map(|s| s.points.iter());
    let (xmin, xmax) = bounds(all().map(|q| q.0));
    let (ymin, ymax) = bounds(all().map(|q| q.1));
    let px = |x: f64| x0 + PAD_L + (x - xmin) / (xmax - xmin) * (W - PAD_L - PAD_R);
    let py = |y: f64| H - PAD_B - (y - ymin) / (ymax - ymin) * (H - PAD_T - PAD_B);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="17" font-size="13">{}</text>"#,
        x0 + PAD_L,
        xml_escape(&p.title)
    );
    let (left, right, top, bottom) = (x0 + PAD_L, x0 + W - PAD_R, PAD_T, H - PAD_B);
    let _ = writeln!(
        svg,
        r#"<path d="M{left},{top} L{left},{bottom} L{right},{bottom}" fill="none" stroke="black"/>"#
    );
    for t in 0..=4 {
        let f = t as f64 / 4.0;
        let (xv, yv) = (xmin + f * (xmax - xmin), ymin + f * (ymax - ymin));
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            px(xv),
            bottom + 14.0,
            fmt(xv),
            left - 4.0,
            py(yv) + 4.0,
            fmt(yv)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (left + right) / 2.0,
        H - 8.0,
        xml_escape(&p.x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        x0 + 12.0,
        (top + bottom) / 2.0,
        xml_escape(&p.y_label)
    );
    for (k, s) in p.series.iter().enumerate() {
        if matches!(s.style, Style::Line | Style::Dashed | Style::LineAndPoints)
            && s.points.len() > 1
        {
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let dash = if s.style == Style::Dashed {
                r#" stroke-dasharray="5,4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                s.color,
                pts.join(" ")
            );
        }
        if matches!(s.style, Style::Points | Style::LineAndPoints) {
            for (x, y) in &s.points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    px(*x),
                    py(*y),
                    s.color
                );
            }
        }
        // Legend, top left inside the axes.
        let ly = top + 12.0 + 14.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + 8.0,
            ly - 4.0,
            s.color,
            left + 22.0,
            ly,
            xml_escape(&s.name)
        );
    }
}

/// Write `stem.svg` and `stem.png` (atomically).
pub fn write_chart(stem: &Path, panels: &[Panel]) -> Result<()> {
    let svg = to_svg(panels);
    write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    write_atomic(&stem.with_extension("png"), &rasterise(&svg)?)
}

/// The SVG as PNG bytes, at twice its size.
pub fn rasterise(svg: &str) -> Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("parsing the chart SVG")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(2.0)
        .context("empty chart")?;
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("chart too large")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the chart PNG")
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi > lo {
        let m = 0.04 * (hi - lo);
        (lo - m, hi + m)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `s` as XML text or attribute value.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_renders_to_svg_and_a_png_with_ink() {
        let panel = Panel {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "s".into(),
                color: PALETTE[0],
                style: Style::LineAndPoints,
                points: vec![(0.0, 0.0), (1.0, 1.0), (2.0, 4.0)],
            }],
        };
        let svg = to_svg(&[panel]);
        assert!(svg.contains("<polyline") && svg.contains("<circle"));
        let png = rasterise(&svg).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * W as u32, 2 * H as u32));
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "axes and text are drawn ({dark} dark pixels)");
    }
}
