//! `OUT/curves.svg` and `OUT/curves.png`: training loss and learning rate per step,
//! and zero-shot top-1 when evaluated, drawn from `metrics.jsonl`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use realsyn_data::plot::{PALETTE, Panel, Series, Style, write_chart};

use crate::metrics::{read_metrics, steps, zero_shot_top1};

/// Read `out/metrics.jsonl` and write `out/curves.{svg,png}`. Later lines win for a
/// step logged twice (a resumed run).
pub fn write_curves(out: &Path) -> Result<()> {
    let records = read_metrics(out)?;
    let steps = steps(&records);
    let loss: BTreeMap<u64, f64> = steps.iter().map(|(&s, r)| (s, r.loss)).collect();
    let lr: BTreeMap<u64, f64> = steps.iter().map(|(&s, r)| (s, r.lr)).collect();
    let zs = zero_shot_top1(&records);
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
