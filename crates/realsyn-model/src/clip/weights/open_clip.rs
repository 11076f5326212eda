//! open_clip's parameter names and layouts, in one place: `visit_params` walks every
//! parameter of a [`Clip`] with its open_clip key (loading and exporting are the two
//! visitors of `common::walk`), and `infer_config` reads an architecture off shapes.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

use crate::clip::config::{BUILTIN_CONFIGS, ClipConfig, TextConfig, VisionConfig};
use crate::clip::vision::VisionTransformer;
use crate::clip::{Clip, ImageTower};
use crate::common::state_dict::StateDict;
use crate::common::transformer::Transformer;
use crate::common::walk::{
    Layout, ParamVisitor, export, load_strict, param_shapes, visit_linear, visit_ln,
};
use crate::eva02::weights::{is_open_clip_eva, visit_eva_tower};

fn visit_transformer<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    key: &str,
    t: &mut Transformer<B>,
) -> Result<()> {
    for (i, block) in t.resblocks.iter_mut().enumerate() {
        let p = format!("{key}.resblocks.{i}");
        visit_ln(v, &format!("{p}.ln_1"), &mut block.ln_1)?;
        // torch's MultiheadAttention names the packed projection without a sub-module.
        v.visit(
            &format!("{p}.attn.in_proj_weight"),
            Layout::LinearWeight,
            &mut block.attn.in_proj.weight,
        )?;
        if let Some(b) = block.attn.in_proj.bias.as_mut() {
            v.visit(&format!("{p}.attn.in_proj_bias"), Layout::Same, b)?;
        }
        visit_linear(v, &format!("{p}.attn.out_proj"), &mut block.attn.out_proj)?;
        visit_ln(v, &format!("{p}.ln_2"), &mut block.ln_2)?;
        visit_linear(v, &format!("{p}.mlp.c_fc"), &mut block.mlp.c_fc)?;
        visit_linear(v, &format!("{p}.mlp.c_proj"), &mut block.mlp.c_proj)?;
    }
    Ok(())
}

/// Walk every parameter of the model with its open_clip state-dict key.
pub fn visit_params<B: Backend, V: ParamVisitor<B>>(clip: &mut Clip<B>, v: &mut V) -> Result<()> {
    match &mut clip.visual {
        ImageTower::Vit(vis) => visit_vit(v, vis)?,
        ImageTower::Eva(eva) => visit_eva_tower(v, "visual.trunk", eva)?,
    }
    let p = clip.config.text_prefix();
    let txt = &mut clip.text;
    v.visit(
        &format!("{p}token_embedding.weight"),
        Layout::Same,
        &mut txt.token_embedding.weight,
    )?;
    v.visit(
        &format!("{p}positional_embedding"),
        Layout::Same,
        &mut txt.positional_embedding,
    )?;
    visit_transformer(v, &format!("{p}transformer"), &mut txt.transformer)?;
    visit_ln(v, &format!("{p}ln_final"), &mut txt.ln_final)?;
    v.visit(
        &format!("{p}text_projection"),
        Layout::Same,
        &mut txt.text_projection,
    )?;
    v.visit("logit_scale", Layout::Scalar, &mut clip.logit_scale)
}

/// open_clip's own ViT image tower (`visual.*`).
fn visit_vit<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    vis: &mut VisionTransformer<B>,
) -> Result<()> {
    v.visit("visual.conv1.weight", Layout::Same, &mut vis.conv1)?;
    v.visit(
        "visual.class_embedding",
        Layout::Same,
        &mut vis.class_embedding,
    )?;
    v.visit(
        "visual.positional_embedding",
        Layout::Same,
        &mut vis.positional_embedding,
    )?;
    visit_ln(v, "visual.ln_pre", &mut vis.ln_pre)?;
    visit_transformer(v, "visual.transformer", &mut vis.transformer)?;
    visit_ln(v, "visual.ln_post", &mut vis.ln_post)?;
    v.visit("visual.proj", Layout::Same, &mut vis.proj)
}

impl<B: Backend> Clip<B> {
    /// Build a model from an open_clip state dict. Every tensor must be used and have
    /// the config's shape; leftovers are reported (like `load_state_dict(strict=True)`).
    pub fn from_open_clip(
        config: &ClipConfig,
        mut sd: StateDict,
        device: &B::Device,
    ) -> Result<Self> {
        // Buffers open_clip saves but that are not parameters.
        for buffer in ["attn_mask", "visual.attn_mask", "text.attn_mask"] {
            sd.tensors.remove(buffer);
        }
        check_tower_family(config, &sd)?;
        let mut clip = Clip::new(config, device);
        load_strict(sd, device, |loader| visit_params(&mut clip, loader))
            .context("loading open_clip weights")?;
        Ok(clip)
    }

    /// The model's parameters as an open_clip state dict.
    pub fn to_open_clip(&self) -> Result<StateDict> {
        let mut clip = self.clone();
        export(|exporter| visit_params(&mut clip, exporter))
    }
}

/// Recover the architecture from an open_clip state dict's shapes (as open_clip's
/// `build_model_from_openai_state_dict` does). QuickGELU cannot be seen in weights.
pub fn infer_config(sd: &StateDict, quick_gelu: bool) -> Result<ClipConfig> {
    if is_open_clip_eva(sd) {
        return infer_eva_config(sd);
    }
    let shape = |k: &str| -> Result<&Vec<usize>> {
        Ok(&sd
            .get(k)
            .with_context(|| format!("cannot infer the architecture: no {k:?}"))?
            .shape)
    };
    let conv = shape("visual.conv1.weight")?;
    let (width, patch) = (conv[0], conv[2]);
    let tokens = shape("visual.positional_embedding")?[0];
    let grid = ((tokens - 1) as f64).sqrt().round() as usize;
    let text = if sd.contains("text.token_embedding.weight") {
        "text."
    } else {
        ""
    };
    let tok = shape(&format!("{text}token_embedding.weight"))?;
    let text_width = tok[1];
    let v_mlp = shape("visual.transformer.resblocks.0.mlp.c_fc.weight")?[0];
    let t_mlp = shape(&format!("{text}transformer.resblocks.0.mlp.c_fc.weight"))?[0];
    let config = ClipConfig {
        embed_dim: shape(&format!("{text}text_projection"))?[1],
        quick_gelu,
        vision_cfg: VisionConfig {
            image_size: grid * patch,
            patch_size: patch,
            layers: sd.count_blocks("visual.transformer.resblocks."),
            width,
            head_width: 64,
            mlp_ratio: v_mlp as f64 / width as f64,
            eva: None,
            timm_model_name: None,
            timm_model_pretrained: None,
            timm_pool: None,
            timm_proj: None,
            timm_proj_bias: None,
            ls_init_value: None,
            pool_type: None,
            final_ln_after_pool: None,
            attentional_pool: None,
            no_ln_pre: None,
        },
        text_cfg: TextConfig {
            context_length: shape(&format!("{text}positional_embedding"))?[0],
            vocab_size: tok[0],
            width: text_width,
            heads: text_width / 64,
            layers: sd.count_blocks(&format!("{text}transformer.resblocks.")),
            mlp_ratio: t_mlp as f64 / text_width as f64,
            hf_model_name: None,
            ls_init_value: None,
            pool_type: None,
            proj_bias: None,
            no_causal_mask: None,
            embed_cls: None,
        },
        custom_text: sd.contains("text.token_embedding.weight"),
    };
    config.validate()?;
    Ok(config)
}

/// An EVA02 state dict's architecture: the shipped EVA02 config whose every parameter
/// key and shape it matches (heads and the design flags cannot be read off shapes alone).
fn infer_eva_config(sd: &StateDict) -> Result<ClipConfig> {
    for (name, _) in BUILTIN_CONFIGS {
        let config = ClipConfig::from_name_or_path(name)?;
        if config.is_eva() && matches_shapes(&config, sd)? {
            return Ok(config);
        }
    }
    bail!(
        "these EVA02 weights (visual.trunk.*) match no shipped EVA02 config by shape: give the architecture with --arch (a shipped name or an open_clip config .json)"
    )
}

/// Every parameter of `config` is in `sd` with its shape, and nothing else is.
fn matches_shapes(config: &ClipConfig, sd: &StateDict) -> Result<bool> {
    let shapes = param_shapes_of(config)?;
    Ok(shapes.len() == sd.len()
        && shapes
            .iter()
            .all(|(k, s)| sd.get(k).is_some_and(|t| &t.shape == s)))
}

/// `(open_clip key, shape)` of every parameter of `config`, computed without
/// allocating the model (EVA02-E-14-plus has 5.0B parameters).
pub fn param_shapes_of(config: &ClipConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let mut clip = Clip::<crate::backend::Cpu>::new(config, &Default::default());
    param_shapes(|lister| visit_params(&mut clip, lister))
}

/// open_clip's `sum(p.numel() for p in model.parameters())`, without allocating.
pub fn param_count(config: &ClipConfig) -> Result<usize> {
    Ok(param_shapes_of(config)?
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum())
}

/// Weights of one tower family given for a config of the other: say so, instead of a
/// list of missing keys.
fn check_tower_family(config: &ClipConfig, sd: &StateDict) -> Result<()> {
    let weights_family = if is_open_clip_eva(sd) {
        "EVA02-CLIP (visual.trunk.*)"
    } else if sd.contains("visual.conv1.weight") {
        "open_clip ViT CLIP (visual.conv1.weight)"
    } else {
        return Ok(());
    };
    if is_open_clip_eva(sd) != config.is_eva() {
        let config_family = if config.is_eva() {
            "an EVA02 image tower"
        } else {
            "open_clip's ViT image tower"
        };
        bail!(
            "the weights are {weights_family}, but the architecture asks for {config_family}: give the weights' own architecture (--arch), e.g. {}",
            if is_open_clip_eva(sd) {
                "EVA02-B-16"
            } else {
                "ViT-B-32"
            }
        );
    }
    let text = config.text_prefix();
    if !sd.contains(&format!("{text}token_embedding.weight")) {
        let other = if config.custom_text {
            "at the top level (token_embedding.weight)"
        } else {
            "under text. (text.token_embedding.weight)"
        };
        if sd.contains("token_embedding.weight") || sd.contains("text.token_embedding.weight") {
            bail!(
                "the weights keep the text tower {other}, the architecture expects the other layout (open_clip's custom_text = {})",
                config.custom_text
            );
        }
    }
    Ok(())
}
