//! Weights on disk. Every format is read into an open_clip-named [`StateDict`]:
//!
//! | format | read | write |
//! |---|---|---|
//! | open_clip `.safetensors` | yes | yes (`open_clip.create_model(name, pretrained=...)` loads it) |
//! | open_clip `.pt` / `.bin` / `.pth` (torch pickle, also training checkpoints with `state_dict`) | yes, through burn-store's PyTorch reader | no (write safetensors) |
//! | Hugging Face `CLIPModel` (`model.safetensors` / `pytorch_model.bin` + `config.json`) | yes | yes |
//! | realsyn checkpoint | yes | yes |
//! | EVA-CLIP release (BAAI `EVA02_CLIP_*`: `visual.blocks.*`, `mlp.w1`, `inner_attn_ln`) | yes, mapped to open_clip's `visual.trunk.*` | no (write open_clip) |
//!
//! A realsyn checkpoint *is* an open_clip safetensors file whose header metadata also
//! carries the model config (`realsyn_config`), so it needs no `--arch` to load and
//! open_clip reads it unchanged.

mod hf;
mod open_clip;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

pub use hf::{config_from_hf_json, hf_config_json, hf_to_open_clip, is_hf, open_clip_to_hf};
pub use open_clip::{infer_config, param_count, param_shapes_of, visit_params};

use crate::clip::Clip;
use crate::clip::config::ClipConfig;
use crate::common::files::{self, read_torch_pickle, write_safetensors};
use crate::common::state_dict::StateDict;
use crate::eva02::weights::{eva_clip_release_to_open_clip, is_eva_clip_release, is_open_clip_eva};
use realsyn_io::fs::write_atomic;

/// Safetensors metadata key holding the model config JSON.
pub const CONFIG_METADATA_KEY: &str = "realsyn_config";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    OpenClip,
    HuggingFace,
    /// open_clip safetensors with the config embedded.
    Realsyn,
    /// The original EVA-CLIP release's key layout (read only).
    EvaClipRelease,
}

impl std::str::FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "open_clip" | "openclip" | "open-clip" => Ok(Self::OpenClip),
            "hf" | "huggingface" | "hugging-face" => Ok(Self::HuggingFace),
            "realsyn" => Ok(Self::Realsyn),
            _ => bail!("unknown weight format {s:?}: use open_clip, hf or realsyn"),
        }
    }
}

/// Weights read from disk, already in open_clip naming.
pub struct LoadedWeights {
    pub state_dict: StateDict,
    /// The architecture, when the file says it (realsyn metadata or HF config.json).
    pub config: Option<ClipConfig>,
    pub format: WeightFormat,
}

/// Read any supported weight file (or a Hugging Face model directory).
pub fn read_weights(path: &Path) -> Result<LoadedWeights> {
    let (file, hf_config_path) = resolve_model_path(path)?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (sd, mut config) = match ext.as_str() {
        "safetensors" => read_safetensors(&file)?,
        "pt" | "pth" | "bin" | "ckpt" => (read_torch_pickle(&file)?, None),
        _ => bail!(
            "{}: unknown weight file type (expected .safetensors, .pt, .pth or .bin)",
            file.display()
        ),
    };
    let sd = sd.strip_prefix("module.");
    if is_hf(&sd) {
        if config.is_none() {
            if let Some(cfg_path) = hf_config_path.filter(|p| p.exists()) {
                let json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)
                        .with_context(|| format!("parsing {}", cfg_path.display()))?;
                config = Some(config_from_hf_json(&json)?);
            }
        }
        let sd = hf_to_open_clip(sd)
            .with_context(|| format!("mapping {} from Hugging Face names", file.display()))?;
        return Ok(LoadedWeights {
            state_dict: sd,
            config,
            format: WeightFormat::HuggingFace,
        });
    }
    if is_eva_clip_release(&sd) {
        return Ok(LoadedWeights {
            state_dict: eva_clip_release_to_open_clip(sd),
            config,
            format: WeightFormat::EvaClipRelease,
        });
    }
    if !sd.contains("visual.conv1.weight") && !is_open_clip_eva(&sd) {
        let sample: Vec<&String> = sd.keys().take(5).collect();
        bail!(
            "{}: not a CLIP or EVA02-CLIP state dict (no visual.conv1.weight, visual.trunk.*, visual.blocks.* or vision_model.* keys; first keys: {sample:?})",
            file.display()
        );
    }
    let format = if config.is_some() {
        WeightFormat::Realsyn
    } else {
        WeightFormat::OpenClip
    };
    Ok(LoadedWeights {
        state_dict: sd,
        config,
        format,
    })
}

/// A directory means a Hugging Face / open_clip hub snapshot: find its weight file.
fn resolve_model_path(path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    if !path.exists() {
        bail!("weights not found: {}", path.display());
    }
    if path.is_dir() {
        for name in [
            "open_clip_model.safetensors",
            "model.safetensors",
            "open_clip_pytorch_model.bin",
            "pytorch_model.bin",
        ] {
            let f = path.join(name);
            if f.exists() {
                return Ok((f, Some(path.join("config.json"))));
            }
        }
        bail!(
            "{}: directory holds no model.safetensors / open_clip_model.safetensors / pytorch_model.bin",
            path.display()
        );
    }
    Ok((
        path.to_path_buf(),
        path.parent().map(|p| p.join("config.json")),
    ))
}

/// A safetensors file and the model config in its header, when it carries one.
pub fn read_safetensors(path: &Path) -> Result<(StateDict, Option<ClipConfig>)> {
    let (sd, meta) = files::read_safetensors(path)?;
    let config = match meta.get(CONFIG_METADATA_KEY) {
        Some(json) => Some(ClipConfig::from_json(json).context("embedded realsyn config")?),
        None => None,
    };
    Ok((sd, config))
}

/// Write weights in `format`. Hugging Face output is a directory (`model.safetensors`
/// + `config.json`); the others are one `.safetensors` file.
pub fn write_weights(
    path: &Path,
    sd: &StateDict,
    config: &ClipConfig,
    format: WeightFormat,
) -> Result<()> {
    let mut meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    if config.is_eva() && format == WeightFormat::HuggingFace {
        bail!(
            "EVA02-CLIP has no Hugging Face CLIPModel layout: write open_clip or realsyn weights"
        );
    }
    match format {
        WeightFormat::OpenClip => write_safetensors(path, sd, meta),
        WeightFormat::EvaClipRelease => {
            bail!("writing the EVA-CLIP release layout is not supported: write open_clip weights")
        }
        WeightFormat::Realsyn => {
            meta.insert(CONFIG_METADATA_KEY.into(), serde_json::to_string(config)?);
            write_safetensors(path, sd, meta)
        }
        WeightFormat::HuggingFace => {
            let hf = open_clip_to_hf(sd.clone())?;
            write_safetensors(&path.join("model.safetensors"), &hf, meta)?;
            write_atomic(
                &path.join("config.json"),
                serde_json::to_string_pretty(&hf_config_json(config))?.as_bytes(),
            )
        }
    }
}

/// Resolve the architecture: an explicit `--arch`/config wins, then the file's own
/// config, then inference from tensor shapes.
pub fn resolve_config(loaded: &LoadedWeights, arch: Option<&str>) -> Result<ClipConfig> {
    match (arch, &loaded.config) {
        (Some(a), _) => ClipConfig::from_name_or_path(a),
        (None, Some(c)) => Ok(c.clone()),
        (None, None) => infer_config(&loaded.state_dict, false),
    }
}

impl<B: Backend> Clip<B> {
    /// Load any supported weights. `arch` (a shipped name or config path) is needed
    /// only when the file does not carry its config and the shapes are ambiguous.
    pub fn load(path: &Path, arch: Option<&str>, device: &B::Device) -> Result<Self> {
        let loaded = read_weights(path)?;
        let config = resolve_config(&loaded, arch)?;
        Clip::from_open_clip(&config, loaded.state_dict, device)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Save as a realsyn checkpoint (open_clip safetensors + embedded config).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_weights(
            path,
            &self.to_open_clip()?,
            &self.config,
            WeightFormat::Realsyn,
        )
    }
}
