//! `metrics.jsonl`: one typed record per line, written by the loop and read back by
//! the curves and the tests. A step's record, and a zero-shot record after an
//! evaluation; a line cut by a kill is skipped when read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One optimisation step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub logit_scale: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub data_wait: f64,
}

/// Zero-shot accuracy after a step (the full metrics are written; top-1 is what the
/// curves read back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroShotRecord<M> {
    pub step: u64,
    pub zeroshot: M,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZeroShotTop1 {
    pub acc1: f64,
}

/// A line of `metrics.jsonl` as read back.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    Step(StepRecord),
    ZeroShot(ZeroShotRecord<ZeroShotTop1>),
}

/// The records of a run's `metrics.jsonl`; a line cut by a kill is skipped.
pub fn read_metrics(out_dir: &Path) -> Result<Vec<MetricsLine>> {
    let text = std::fs::read_to_string(out_dir.join("metrics.jsonl"))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The step records, one per step. A step logged twice (it ran, the process was
/// killed before the next checkpoint, and it ran again on resume) keeps its last.
pub fn steps(records: &[MetricsLine]) -> BTreeMap<u64, &StepRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            MetricsLine::Step(s) => Some((s.step, s)),
            MetricsLine::ZeroShot(_) => None,
        })
        .collect()
}

/// Zero-shot top-1 per evaluated step (the last evaluation of a step wins).
pub fn zero_shot_top1(records: &[MetricsLine]) -> BTreeMap<u64, f64> {
    records
        .iter()
        .filter_map(|r| match r {
            MetricsLine::ZeroShot(z) => Some((z.step, z.zeroshot.acc1)),
            MetricsLine::Step(_) => None,
        })
        .collect()
}

/// Losses per step (see `steps`).
pub fn read_losses(out_dir: &Path) -> Result<BTreeMap<u64, f64>> {
    Ok(steps(&read_metrics(out_dir)?)
        .into_iter()
        .map(|(s, r)| (s, r.loss))
        .collect())
}
