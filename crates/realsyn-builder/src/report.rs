//! The dataset report of a store (paper Fig. 5a and Fig. 8): image-text cosine
//! histograms for text1 and the synthetic text, text lengths, image-cluster sizes
//! before and after balancing beside random sampling of the same size, and the
//! funnel from documents to every written variant. Numbers in `report.json`,
//! pictures as SVG + PNG through `realsyn_data::plot`, all under `STORE/report/`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use realsyn_data::plot::{PALETTE, Panel, Series, Style, write_chart};
use serde::{Deserialize, Serialize};

use crate::balance::stage::{self as balance, SamplesSource};
use crate::store::funnel::Funnel;
use crate::store::manifest::Manifest;

const BINS: usize = 40;

/// A histogram over equal-width bins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<usize>,
    pub n: usize,
    pub mean: f64,
}

impl Histogram {
    pub fn of(values: &[f64], lo: f64, hi: f64, bins: usize) -> Self {
        let mut counts = vec![0; bins];
        let width = (hi - lo).max(f64::MIN_POSITIVE) / bins as f64;
        for &v in values {
            let b = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
            counts[b] += 1;
        }
        Self {
            lo,
            hi,
            counts,
            n: values.len(),
            mean: values.iter().sum::<f64>() / values.len().max(1) as f64,
        }
    }

    /// Bin centres and shares of the total, for a line chart.
    fn points(&self) -> Vec<(f64, f64)> {
        let w = (self.hi - self.lo) / self.counts.len() as f64;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                (
                    self.lo + (i as f64 + 0.5) * w,
                    c as f64 / self.n.max(1) as f64,
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    /// cosine(image, text) with the pairing encoder: text1 (retrieval) and the
    /// synthetic text (balance), over every paired image (Fig. 5a).
    pub cosine: BTreeMap<String, Histogram>,
    /// Words per text, by field.
    pub words: BTreeMap<String, Histogram>,
    /// Image-cluster sizes, largest first: before balancing, after each cap, and
    /// random sampling of each cap's size (Fig. 8).
    pub cluster_sizes: BTreeMap<String, Vec<usize>>,
    /// Every funnel step: (step, unit, in, out).
    pub funnel: Vec<(String, String, u64, u64)>,
}

/// Build the report from a store's finished stages and write it to `out`.
pub fn write(store: &Path, out: &Path) -> Result<DatasetReport> {
    let m = Manifest::read(store)?;
    let source = SamplesSource::open(store, &m)?;
    let mut cos: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut words: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let count = |t: &str| t.split_whitespace().count() as f64;
    for r in source.all() {
        let (_, _, g) = r?;
        if let Some(t) = g.pair.texts.first() {
            cos.entry("text1".into()).or_default().push(t.cosine as f64);
        }
        for (i, t) in g.pair.texts.iter().enumerate() {
            words
                .entry(format!("text{}", i + 1))
                .or_default()
                .push(count(&t.text));
        }
        if let Some(s) = g.synthetic.first() {
            words
                .entry("syn_text".into())
                .or_default()
                .push(count(&s.text));
        }
    }
    let mut cluster_sizes = BTreeMap::new();
    if m.balance.is_some() {
        let (rows, summary) = balance::open(store)?;
        for r in &rows {
            if let (Some(c), "syn_text") = (r.cosine, r.scored_text.as_str()) {
                cos.entry("syn_text".into()).or_default().push(c as f64);
            }
        }
        let sizes = |keep: &dyn Fn(&balance::BalancedRow) -> bool| {
            let mut s = vec![0usize; summary.clusters];
            for r in rows.iter().filter(|r| keep(r)) {
                if let Some(c) = r.cluster {
                    s[c as usize] += 1;
                }
            }
            s.sort_unstable_by(|a, b| b.cmp(a));
            s
        };
        cluster_sizes.insert("before balancing".to_string(), sizes(&|_| true));
        for v in &summary.variants {
            cluster_sizes.insert(
                format!("balanced-{}", v.cap),
                sizes(&|r| r.in_balanced(v.cap)),
            );
            cluster_sizes.insert(
                format!("random-{}", v.cap),
                sizes(&|r| r.in_random(v.samples)),
            );
        }
    }
    let funnel: Funnel = crate::pipeline::store_funnel(store)?;
    let report = DatasetReport {
        cosine: cos
            .iter()
            .map(|(k, v)| (k.clone(), Histogram::of(v, -0.1, 0.7, BINS)))
            .collect(),
        words: words
            .iter()
            .map(|(k, v)| (k.clone(), Histogram::of(v, 0.0, 80.0, BINS)))
            .collect(),
        cluster_sizes,
        funnel: funnel
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.unit.clone(), s.input, s.output))
            .collect(),
    };
    std::fs::create_dir_all(out)?;
    realsyn_io::fs::write_atomic(
        &out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    draw(&report, out)?;
    Ok(report)
}

fn histogram_panel(title: &str, x: &str, h: &BTreeMap<String, Histogram>) -> Panel {
    Panel {
        title: title.into(),
        x_label: x.into(),
        y_label: "share of texts".into(),
        series: h
            .iter()
            .enumerate()
            .map(|(i, (name, h))| Series {
                name: format!("{name} (mean {:.3})", h.mean),
                color: PALETTE[i % PALETTE.len()],
                style: Style::Line,
                points: h.points(),
            })
            .collect(),
    }
}

fn draw(r: &DatasetReport, out: &Path) -> Result<()> {
    write_chart(
        &out.join("cosines"),
        &[histogram_panel(
            "image-text cosine (Fig. 5a)",
            "cosine",
            &r.cosine,
        )],
    )?;
    write_chart(
        &out.join("lengths"),
        &[histogram_panel("text length", "words", &r.words)],
    )?;
    if !r.cluster_sizes.is_empty() {
        let series = r
            .cluster_sizes
            .iter()
            .enumerate()
            .map(|(i, (name, sizes))| Series {
                name: name.clone(),
                color: PALETTE[i % PALETTE.len()],
                style: if name.starts_with("random") {
                    Style::Dashed
                } else {
                    Style::Line
                },
                points: sizes
                    .iter()
                    .enumerate()
                    .map(|(rank, &s)| ((rank + 1) as f64, s as f64))
                    .collect(),
            })
            .collect();
        write_chart(
            &out.join("clusters"),
            &[Panel {
                title: "image-cluster sizes (Fig. 8)".into(),
                x_label: "cluster rank (largest first)".into(),
                y_label: "samples".into(),
                series,
            }],
        )?;
    }
    Ok(())
}
