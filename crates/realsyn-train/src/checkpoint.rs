//! Checkpoints: `checkpoints/step_00001000/` holding `model.safetensors` (a realsyn
//! checkpoint, i.e. open_clip weights + config, loadable by open_clip),
//! `optimizer.safetensors` (AdamW moments in PyTorch's layout) and `state.json`
//! (step, data position, skip counts). A directory is written under a temporary
//! name and renamed into place, then `checkpoints/latest` is updated atomically, so
//! a kill at any moment leaves the previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use realsyn_data::DataPosition;
use realsyn_io::fs::write_atomic;
use realsyn_model::Clip;
use realsyn_model::common::files::{read_safetensors, write_safetensors};
use realsyn_model::common::state_dict::StateDict;
use serde::{Deserialize, Serialize};

use crate::optim::AdamW;

/// Everything besides weights and moments that an exact resume needs. All
/// randomness of the data pipeline is a function of (seed, position), so the
/// position is the RNG state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Where the next batch starts (of the first data stream).
    pub data: DataPosition,
    /// Every data stream's position, when the run reads more than one
    /// (`crate::streams`); absent for one stream, which `data` describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<DataPosition>,
    pub samples_seen: u64,
    pub skips: BTreeMap<String, u64>,
    pub total_steps: u64,
}

pub fn save<B: AutodiffBackend>(
    dir: &Path,
    model: &Clip<B>,
    opt: &AdamW<B::InnerBackend>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("step_{:08}", state.step);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    model.save(&tmp.join("model.safetensors"))?;
    // The step is also state.json's; here for readers of this file alone.
    let meta = HashMap::from([("step".to_string(), opt.step.to_string())]);
    write_safetensors(
        &tmp.join("optimizer.safetensors"),
        &opt.state_dict(model)?,
        meta,
    )?;
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming into {}", final_dir.display()))?;
    write_atomic(&dir.join("latest"), name.as_bytes())?;
    prune(dir, keep)?;
    Ok(final_dir)
}

/// Keep the newest `keep` checkpoints (0 = keep all); stray temp dirs are removed.
fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("step_") && p.is_dir() {
            steps.push(p);
        } else if name.starts_with(".step_") && name.ends_with(".tmp") && p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    steps.sort();
    if keep > 0 && steps.len() > keep {
        for p in &steps[..steps.len() - keep] {
            std::fs::remove_dir_all(p)?;
        }
    }
    Ok(())
}

/// `latest` (the run's newest checkpoint) or a checkpoint directory path.
pub fn resolve(checkpoints: &Path, which: &str) -> Result<PathBuf> {
    if which == "latest" {
        let latest = checkpoints.join("latest");
        let name = std::fs::read_to_string(&latest).with_context(|| {
            format!(
                "--resume latest: no checkpoint yet ({} is missing); start without --resume",
                latest.display()
            )
        })?;
        return Ok(checkpoints.join(name.trim()));
    }
    let p = PathBuf::from(which);
    if !p.join("state.json").is_file() {
        bail!(
            "{} is not a checkpoint directory (no state.json)",
            p.display()
        );
    }
    Ok(p)
}

pub struct Loaded<B: AutodiffBackend> {
    pub model: Clip<B>,
    /// AdamW moments; their step count is `state.step` (one update per step).
    pub optimizer: StateDict,
    pub state: TrainState,
}

pub fn load<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<Loaded<B>> {
    let state: TrainState = serde_json::from_slice(
        &std::fs::read(dir.join("state.json"))
            .with_context(|| format!("reading {}/state.json", dir.display()))?,
    )?;
    let model = Clip::<B>::load(&dir.join("model.safetensors"), None, device)?;
    let (optimizer, _) = read_safetensors(&dir.join("optimizer.safetensors"))?;
    Ok(Loaded {
        model,
        optimizer,
        state,
    })
}
