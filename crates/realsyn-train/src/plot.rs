//! `OUT/curves.svg`: training loss and learning rate per step, and zero-shot top-1
//! when evaluated, drawn from `metrics.jsonl` as a dependency-free SVG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use realsyn_data::fs::write_atomic;

use crate::trainer::{metric_by_step, read_metrics};

struct Series {
    name: &'static str,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

/// Read `out/metrics.jsonl` and write `out/curves.svg`. Later lines win for a step
/// logged twice (a resumed run).
pub fn write_curves(out: &Path) -> Result<()> {
    let records = read_metrics(out)?;
    let loss = metric_by_step(&records, |v| v["loss"].as_f64());
    let lr = metric_by_step(&records, |v| {
        v["loss"].as_f64().map(|_| v["lr"].as_f64().unwrap_or(0.0))
    });
    let zs = metric_by_step(&records, |v| v["zeroshot"]["acc1"].as_f64());
    let series =
        |m: &std::collections::BTreeMap<u64, f64>| m.iter().map(|(s, v)| (*s as f64, *v)).collect();
    let panels = [
        Series {
            name: "training loss",
            color: "#1f77b4",
            points: series(&loss),
        },
        Series {
            name: "learning rate",
            color: "#ff7f0e",
            points: series(&lr),
        },
        Series {
            name: "zero-shot top-1",
            color: "#2ca02c",
            points: series(&zs),
        },
    ];
    let panels: Vec<&Series> = panels.iter().filter(|s| !s.points.is_empty()).collect();
    let (w, h, pad) = (360.0, 240.0, 48.0);
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="11">"#,
        w * panels.len() as f64
    )?;
    for (i, s) in panels.iter().enumerate() {
        let x0 = i as f64 * w;
        let (xmin, xmax) = bounds(s.points.iter().map(|p| p.0));
        let (ymin, ymax) = bounds(s.points.iter().map(|p| p.1));
        let px = |x: f64| x0 + pad + (x - xmin) / (xmax - xmin) * (w - 1.5 * pad);
        let py = |y: f64| h - pad + -(y - ymin) / (ymax - ymin) * (h - 1.6 * pad);
        let path: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        writeln!(
            svg,
            r#"<text x="{}" y="16" font-size="13">{}</text>"#,
            x0 + pad,
            s.name
        )?;
        writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            s.color,
            path.join(" ")
        )?;
        if s.points.len() < 30 {
            for (x, y) in &s.points {
                writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                    px(*x),
                    py(*y),
                    s.color
                )?;
            }
        }
        let axis = format!(
            r#"<line x1="{a}" y1="{b}" x2="{c}" y2="{b}" stroke="black"/><line x1="{a}" y1="{b}" x2="{a}" y2="{d}" stroke="black"/>"#,
            a = x0 + pad,
            b = h - pad,
            c = x0 + w - 0.5 * pad,
            d = 0.6 * pad
        );
        writeln!(svg, "{axis}")?;
        for (y, anchor) in [(ymin, h - pad), (ymax, 0.6 * pad)] {
            writeln!(
                svg,
                r#"<text x="{}" y="{anchor}" text-anchor="end">{}</text>"#,
                x0 + pad - 4.0,
                fmt(y)
            )?;
        }
        writeln!(
            svg,
            r#"<text x="{}" y="{}">step {}</text>"#,
            x0 + pad,
            h - pad + 16.0,
            xmin as u64
        )?;
        writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            x0 + w - 0.5 * pad,
            h - pad + 16.0,
            xmax as u64
        )?;
    }
    svg.push_str("</svg>\n");
    write_atomic(&out.join("curves.svg"), svg.as_bytes())
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}
