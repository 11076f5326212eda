//! On-disk cache of frozen image features, so that zero-shot, the linear probe and a
//! re-run after a crash or with another suite reuse what was computed. Layout, under
//! the eval output directory: `features/DATASET/SPLIT.npy` (float32 `[n, dim]`, for
//! numpy users too), `SPLIT.labels.npy` (int32) and `SPLIT.json` (model fingerprint,
//! skips, captions). The JSON is written last, so a split is cached only once all of
//! it is on disk; a different model fingerprint means recompute.

use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use realsyn_io::fs::write_atomic;
use realsyn_io::npy::{read_npy, write_npy};
use serde::{Deserialize, Serialize};

use crate::features::Features;

pub struct FeatureCache {
    dir: PathBuf,
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    fingerprint: String,
    n: usize,
    dim: usize,
    skipped: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    captions: Vec<Vec<String>>,
}

impl FeatureCache {
    pub fn new(dir: &Path, fingerprint: String) -> Self {
        Self {
            dir: dir.to_path_buf(),
            fingerprint,
        }
    }

    fn paths(&self, dataset: &str, split: &str) -> [PathBuf; 3] {
        let d = self.dir.join(dataset);
        [
            d.join(format!("{split}.npy")),
            d.join(format!("{split}.labels.npy")),
            d.join(format!("{split}.json")),
        ]
    }

    /// The cached features of `dataset`/`split` for this model, if complete.
    pub fn load(&self, dataset: &str, split: &str) -> Option<Features> {
        let [x_path, y_path, meta_path] = self.paths(dataset, split);
        let meta: Meta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
        if meta.fingerprint != self.fingerprint {
            return None;
        }
        let (x, shape) = read_npy::<f32>(&x_path).ok()?;
        let (y, _) = read_npy::<i32>(&y_path).ok()?;
        (shape == [meta.n, meta.dim] && y.len() == meta.n).then(|| Features {
            x,
            y: y.into_iter().map(|v| v as usize).collect(),
            dim: meta.dim,
            captions: meta.captions,
            skipped: meta.skipped,
        })
    }

    pub fn store(&self, dataset: &str, split: &str, f: &Features) -> Result<()> {
        let [x_path, y_path, meta_path] = self.paths(dataset, split);
        std::fs::create_dir_all(x_path.parent().unwrap())?;
        write_npy(&x_path, &f.x, &[f.len(), f.dim])?;
        let y: Vec<i32> = f.y.iter().map(|&v| v as i32).collect();
        write_npy(&y_path, &y, &[f.len()])?;
        let meta = Meta {
            fingerprint: self.fingerprint.clone(),
            n: f.len(),
            dim: f.dim,
            skipped: f.skipped,
            captions: f.captions.clone(),
        };
        write_atomic(&meta_path, &serde_json::to_vec(&meta)?)
    }
}

/// A fingerprint of model weights (a file, or the weight and config files of a
/// checkpoint directory) and the settings that change features.
pub fn model_fingerprint(weights: &Path, settings: &str) -> Result<String> {
    let mut files = if weights.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(weights)
            .with_context(|| format!("reading {}", weights.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| {
                        ["safetensors", "pt", "bin", "json"].contains(&e.to_str().unwrap_or(""))
                    })
            })
            .collect();
        v.sort();
        v
    } else {
        vec![weights.to_path_buf()]
    };
    files.retain(|p| !p.ends_with("state.json"));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(settings.as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        h.write(f.file_name().unwrap().as_encoded_bytes());
        let mut file =
            std::fs::File::open(&f).with_context(|| format!("reading {}", f.display()))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.write(&buf[..n]);
        }
    }
    Ok(format!("{:016x}", h.finish()))
}
