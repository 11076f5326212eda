//! Hugging Face `GitForCausalLM` snapshots (`model.safetensors` or `pytorch_model.bin`
//! + `config.json`, e.g. microsoft/git-base-coco) onto [`Git`]. The image encoder's
//! q/k/v projections are packed into the shared ViT block's `in_proj` (as the CLIP
//! loader does); every other tensor maps one to one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

use super::{Git, GitConfig};
use crate::common::files::{read_safetensors, read_torch_pickle};
use crate::common::state_dict::StateDict;
use crate::common::walk::{Layout, ParamVisitor, load_strict, visit_linear, visit_ln};

const VISION: &str = "git.image_encoder.vision_model";

/// The packed q/k/v key of vision layer `i` (not a transformers key: `pack_vision_qkv`
/// makes it from `self_attn.{q,k,v}_proj`).
fn packed_qkv(i: usize) -> String {
    format!("{VISION}.encoder.layers.{i}.self_attn.in_proj")
}

/// Walk every parameter with its transformers key.
pub fn visit_git_params<B: Backend, V: ParamVisitor<B>>(m: &mut Git<B>, v: &mut V) -> Result<()> {
    let vis = &mut m.vision;
    v.visit(
        &format!("{VISION}.embeddings.patch_embedding.weight"),
        Layout::Same,
        &mut vis.conv1,
    )?;
    v.visit(
        &format!("{VISION}.embeddings.class_embedding"),
        Layout::Same,
        &mut vis.class_embedding,
    )?;
    v.visit(
        &format!("{VISION}.embeddings.position_embedding.weight"),
        Layout::Same,
        &mut vis.positional_embedding,
    )?;
    visit_ln(v, &format!("{VISION}.pre_layrnorm"), &mut vis.ln_pre)?;
    for (i, block) in vis.transformer.resblocks.iter_mut().enumerate() {
        let p = format!("{VISION}.encoder.layers.{i}");
        visit_ln(v, &format!("{p}.layer_norm1"), &mut block.ln_1)?;
        visit_linear(v, &packed_qkv(i), &mut block.attn.in_proj)?;
        visit_linear(
            v,
            &format!("{p}.self_attn.out_proj"),
            &mut block.attn.out_proj,
        )?;
        visit_ln(v, &format!("{p}.layer_norm2"), &mut block.ln_2)?;
        visit_linear(v, &format!("{p}.mlp.fc1"), &mut block.mlp.c_fc)?;
        visit_linear(v, &format!("{p}.mlp.fc2"), &mut block.mlp.c_proj)?;
    }
    visit_ln(v, &format!("{VISION}.post_layernorm"), &mut vis.ln_post)?;
    visit_linear(
        v,
        "git.visual_projection.visual_projection.0",
        &mut m.visual_projection,
    )?;
    visit_ln(
        v,
        "git.visual_projection.visual_projection.1",
        &mut m.visual_norm,
    )?;
    v.visit(
        "git.embeddings.word_embeddings.weight",
        Layout::Same,
        &mut m.word_embeddings.weight,
    )?;
    v.visit(
        "git.embeddings.position_embeddings.weight",
        Layout::Same,
        &mut m.position_embeddings.weight,
    )?;
    visit_ln(v, "git.embeddings.LayerNorm", &mut m.embed_norm)?;
    for (i, l) in m.layers.iter_mut().enumerate() {
        let p = format!("git.encoder.layer.{i}");
        visit_linear(v, &format!("{p}.attention.self.query"), &mut l.query)?;
        visit_linear(v, &format!("{p}.attention.self.key"), &mut l.key)?;
        visit_linear(v, &format!("{p}.attention.self.value"), &mut l.value)?;
        visit_linear(v, &format!("{p}.attention.output.dense"), &mut l.attn_out)?;
        visit_ln(
            v,
            &format!("{p}.attention.output.LayerNorm"),
            &mut l.attn_norm,
        )?;
        visit_linear(v, &format!("{p}.intermediate.dense"), &mut l.intermediate)?;
        visit_linear(v, &format!("{p}.output.dense"), &mut l.output)?;
        visit_ln(v, &format!("{p}.output.LayerNorm"), &mut l.out_norm)?;
    }
    visit_linear(v, "output", &mut m.output)
}

/// transformers' state dict -> the walk's keys: vision q/k/v packed, buffers dropped.
pub fn pack_vision_qkv(mut sd: StateDict, layers: usize) -> Result<StateDict> {
    sd.tensors.retain(|k, _| !k.ends_with("position_ids"));
    for i in 0..layers {
        let p = format!("{VISION}.encoder.layers.{i}.self_attn.");
        for suffix in ["weight", "bias"] {
            let packed = sd.take_packed_qkv(&p, suffix)?;
            sd.insert(format!("{}.{suffix}", packed_qkv(i)), packed);
        }
    }
    Ok(sd)
}

/// The weight file and `config.json` of a snapshot directory.
fn resolve(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    if !dir.is_dir() {
        bail!(
            "GIT captioner {}: not a directory (give a Hugging Face snapshot folder, e.g. \
             `huggingface-cli download microsoft/git-base-coco --local-dir DIR`)",
            dir.display()
        );
    }
    let config = dir.join("config.json");
    if !config.exists() {
        bail!(
            "{}: no config.json (a GitForCausalLM snapshot has one)",
            dir.display()
        );
    }
    for name in ["model.safetensors", "pytorch_model.bin"] {
        if dir.join(name).exists() {
            return Ok((dir.join(name), config));
        }
    }
    bail!(
        "{}: no model.safetensors or pytorch_model.bin",
        dir.display()
    )
}

/// Read a snapshot: the state dict (in the walk's keys) and the config.
pub fn read_git(dir: &Path) -> Result<(StateDict, GitConfig)> {
    let (file, config_path) = resolve(dir)?;
    let json = std::fs::read_to_string(&config_path)?;
    let model_type = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| {
            v.get("model_type")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    if let Some(t) = model_type.filter(|t| t != "git") {
        bail!(
            "{}: model_type is {t:?}, not a GIT captioner",
            config_path.display()
        );
    }
    let config = GitConfig::from_hf_json(&json)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let sd = match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(&file)?.0,
        _ => read_torch_pickle(&file)?,
    };
    if !sd.contains("git.embeddings.word_embeddings.weight") {
        let sample: Vec<&String> = sd.keys().take(5).collect();
        bail!(
            "{}: not a GitForCausalLM state dict (first keys: {sample:?})",
            file.display()
        );
    }
    for (what, prefix, configured) in [
        (
            "image-encoder",
            format!("{VISION}.encoder.layers."),
            config.vision_config.num_hidden_layers,
        ),
        (
            "decoder",
            "git.encoder.layer.".to_string(),
            config.num_hidden_layers,
        ),
    ] {
        let found = sd.count_blocks(&prefix);
        if found != configured {
            bail!(
                "{}: config.json says {configured} {what} layers, the weights have {found}: \
                 the config does not belong to these weights",
                dir.display()
            );
        }
    }
    let sd = pack_vision_qkv(sd, config.vision_config.num_hidden_layers)
        .with_context(|| format!("{}: image encoder attention", file.display()))?;
    Ok((sd, config))
}

impl<B: Backend> Git<B> {
    /// Build from a transformers-keyed state dict; every tensor must be used.
    pub fn from_state_dict(cfg: &GitConfig, sd: StateDict, device: &B::Device) -> Result<Self> {
        let sd = pack_vision_qkv(sd, cfg.vision_config.num_hidden_layers)?;
        Self::from_packed(cfg, sd, device)
    }

    /// Build from a state dict already in the walk's keys (`pack_vision_qkv`).
    fn from_packed(cfg: &GitConfig, sd: StateDict, device: &B::Device) -> Result<Self> {
        let mut model = Git::new(cfg, device)?;
        load_strict(sd, device, |loader| visit_git_params(&mut model, loader))?;
        Ok(model)
    }

    /// Load a Hugging Face GIT snapshot directory.
    pub fn load(dir: &Path, device: &B::Device) -> Result<(Self, GitConfig)> {
        let (sd, config) = read_git(dir)?;
        let model = Self::from_packed(&config, sd, device)
            .with_context(|| format!("loading GIT weights from {}", dir.display()))?;
        Ok((model, config))
    }
}
