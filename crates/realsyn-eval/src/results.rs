//! Result files in CLIP_benchmark's format, one per (model, dataset, task):
//! `{"dataset", "model", "pretrained", "task", "metrics": {...}}`, written as
//! `DIR/DATASET_TASK.json`. The report and the scaling fits read them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use realsyn_io::fs::write_atomic;
use serde::{Deserialize, Serialize};

/// CLIP_benchmark's task names.
pub const ZEROSHOT: &str = "zeroshot_classification";
pub const LINEAR_PROBE: &str = "linear_probe";
pub const RETRIEVAL: &str = "zeroshot_retrieval";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalResult {
    pub dataset: String,
    pub model: String,
    pub pretrained: String,
    pub task: String,
    pub metrics: BTreeMap<String, serde_json::Value>,
}

impl EvalResult {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).and_then(|v| v.as_f64())
    }

    pub fn file_name(dataset: &str, task: &str) -> String {
        format!("{dataset}_{task}.json")
    }

    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(Self::file_name(&self.dataset, &self.task));
        write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }
}

/// Every CLIP_benchmark result JSON directly in `dir` (other JSON files are ignored).
pub fn read_results(dir: &Path) -> Result<Vec<EvalResult>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p)?;
        if let Ok(r) = serde_json::from_str::<EvalResult>(&text) {
            out.push(r);
        }
    }
    Ok(out)
}
