//! `OUT/curves.svg` and `OUT/curves.png`: training loss and learning rate per step,
//! and zero-shot top-1 when evaluated, drawn from `metrics.jsonl`.

use std::path::Path;

use anyhow::Result;
use realsyn_data::plot::{PALETTE, Panel, Series, Style, write_chart};

use crate::trainer::{metric_by_step, read_metrics};

/// Read `out/metrics.jsonl` and write `out/curves.{svg,png}`. Later lines win for a
/// step logged twice (a resumed run).
pub fn write_curves(out: &Path) -> Result<()> {
    let records = read_metrics(out)?;
    let loss = metric_by_step(&records, |v| v["loss"].as_f64());
    let lr = metric_by_step(&records, |v| {
        v["loss"].as_f64().map(|_| v["lr"].as_f64().unwrap_or(0.0))
    });
    let zs = metric_by_step(&records, |v| v["zeroshot"]["acc1"].as_f64());
    let panels: Vec<Panel> = [
        ("training loss", &loss, Style::Line),
        ("learning rate", &lr, Style::Line),
        ("zero-shot top-1", &zs, Style::LineAndPoints),
    ]
    .into_iter()
    .enumerate()
    .filter(|(_, (_, m, _))| !m.is_empty())
    .map(|(i, (name, m, style))| Panel {
        title: name.to_string(),
        x_label: "step".into(),
        y_label: name.to_string(),
        series: vec![Series {
            name: name.to_string(),
            color: PALETTE[i],
            style,
            points: m.iter().map(|(s, v)| (*s as f64, *v)).collect(),
        }],
    })
    .collect();
    write_chart(&out.join("curves"), &panels)
}
