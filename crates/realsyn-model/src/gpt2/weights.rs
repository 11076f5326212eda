//! Hugging Face `GPT2LMHeadModel` weights (`model.safetensors` or `pytorch_model.bin`,
//! with or without the `transformer.` prefix) onto [`Gpt2`]. GPT-2's `Conv1D` stores
//! its weight as [in, out], which is already Burn's `Linear` layout.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

use super::{Gpt2, Gpt2Config};
use crate::common::files::{read_safetensors, read_torch_pickle};
use crate::common::state_dict::StateDict;
use crate::common::walk::{Layout, ParamVisitor, load_strict, visit_linear_as, visit_ln};

/// Walk every parameter with its Hugging Face key (without `transformer.`).
pub fn visit_gpt2_params<B: Backend, V: ParamVisitor<B>>(m: &mut Gpt2<B>, v: &mut V) -> Result<()> {
    v.visit("wte.weight", Layout::Same, &mut m.wte.weight)?;
    v.visit("wpe.weight", Layout::Same, &mut m.wpe.weight)?;
    for (i, block) in m.h.resblocks.iter_mut().enumerate() {
        let p = format!("h.{i}");
        visit_ln(v, &format!("{p}.ln_1"), &mut block.ln_1)?;
        // GPT-2's Conv1D is [in, out] (Layout::Same). c_attn packs q, k, v along its
        // output, heads contiguous inside each: the layout `SelfAttention::in_proj` splits.
        visit_linear_as(
            v,
            &format!("{p}.attn.c_attn"),
            &mut block.attn.in_proj,
            Layout::Same,
        )?;
        visit_linear_as(
            v,
            &format!("{p}.attn.c_proj"),
            &mut block.attn.out_proj,
            Layout::Same,
        )?;
        visit_ln(v, &format!("{p}.ln_2"), &mut block.ln_2)?;
        visit_linear_as(
            v,
            &format!("{p}.mlp.c_fc"),
            &mut block.mlp.c_fc,
            Layout::Same,
        )?;
        visit_linear_as(
            v,
            &format!("{p}.mlp.c_proj"),
            &mut block.mlp.c_proj,
            Layout::Same,
        )?;
    }
    visit_ln(v, "ln_f", &mut m.ln_f)
}

/// The weight file and `config.json` of a snapshot directory, or of a file and its
/// directory.
fn resolve(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if !path.exists() {
        bail!("GPT-2 weights not found: {}", path.display());
    }
    if path.is_dir() {
        for name in ["model.safetensors", "pytorch_model.bin"] {
            if path.join(name).exists() {
                return Ok((path.join(name), path.join("config.json")));
            }
        }
        bail!(
            "{}: no model.safetensors or pytorch_model.bin (a Hugging Face GPT-2 snapshot, \
             e.g. `huggingface-cli download gpt2-large`)",
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok((path.to_path_buf(), dir.join("config.json")))
}

/// Read a GPT-2 snapshot into HF-named tensors (prefix `transformer.` removed, the
/// causal-mask buffers and the tied head dropped) and its config (`config.json`, or
/// inferred from shapes with 64-wide heads as every released GPT-2 has).
pub fn read_gpt2(path: &Path) -> Result<(StateDict, Gpt2Config)> {
    let (file, config_path) = resolve(path)?;
    let mut sd = match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(&file)?.0,
        _ => read_torch_pickle(&file)?,
    }
    .strip_prefix("transformer.");
    let buffers: Vec<String> = sd
        .keys()
        .filter(|k| k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias"))
        .cloned()
        .collect();
    for k in buffers {
        sd.tensors.remove(&k);
    }
    if let Some(head) = sd.tensors.remove("lm_head.weight")
        && sd.get("wte.weight") != Some(&head)
    {
        bail!(
            "{}: lm_head is not tied to wte (no released GPT-2 is untied)",
            file.display()
        );
    }
    if !sd.contains("wte.weight") {
        let sample: Vec<&String> = sd.keys().take(5).collect();
        bail!(
            "{}: not a GPT-2 state dict (no wte.weight; first keys: {sample:?})",
            file.display()
        );
    }
    let config = if config_path.exists() {
        Gpt2Config::from_hf_json(&std::fs::read_to_string(&config_path)?)
            .with_context(|| format!("parsing {}", config_path.display()))?
    } else {
        let shape = |k: &str| -> Result<Vec<usize>> {
            Ok(sd.get(k).with_context(|| format!("no {k}"))?.shape.clone())
        };
        let (wte, wpe) = (shape("wte.weight")?, shape("wpe.weight")?);
        if !wte[1].is_multiple_of(64) {
            bail!(
                "{}: no config.json beside the weights, and width {} is not a released \
                 GPT-2's (heads of 64): put the snapshot's config.json next to it",
                file.display(),
                wte[1]
            );
        }
        Gpt2Config {
            vocab_size: wte[0],
            n_positions: wpe[0],
            n_embd: wte[1],
            n_layer: sd.count_blocks("h."),
            n_head: wte[1] / 64,
            n_inner: Some(shape("h.0.mlp.c_fc.weight")?[1]),
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
        }
    };
    Ok((sd, config))
}

impl<B: Backend> Gpt2<B> {
    /// Load a Hugging Face GPT-2 snapshot (directory or weight file). Every tensor
    /// must be used and have the config's shape.
    pub fn load(path: &Path, device: &B::Device) -> Result<(Self, Gpt2Config)> {
        let (sd, config) = read_gpt2(path)?;
        let mut model = Gpt2::new(&config, device)?;
        load_strict(sd, device, |loader| visit_gpt2_params(&mut model, loader))
            .with_context(|| format!("loading GPT-2 weights from {}", path.display()))?;
        Ok((model, config))
    }
}
