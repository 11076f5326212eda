//! open_clip's parameter names and layouts, in one place: `visit_params` walks every
//! parameter of a [`Clip`] with its open_clip key (loading and exporting are the two
//! visitors of `common::walk`), and `infer_config` reads an architecture off shapes.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;

use crate::clip::Clip;
use crate::clip::config::{ClipConfig, TextConfig, VisionConfig};
use crate::common::state_dict::StateDict;
use crate::common::transformer::Transformer;
use crate::common::walk::{Layout, ParamVisitor, export, load_strict, visit_linear, visit_ln};

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
    let vis = &mut clip.visual;
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
    v.visit("visual.proj", Layout::Same, &mut vis.proj)?;
    let txt = &mut clip.text;
    v.visit(
        "token_embedding.weight",
        Layout::Same,
        &mut txt.token_embedding.weight,
    )?;
    v.visit(
        "positional_embedding",
        Layout::Same,
        &mut txt.positional_embedding,
    )?;
    visit_transformer(v, "transformer", &mut txt.transformer)?;
    visit_ln(v, "ln_final", &mut txt.ln_final)?;
    v.visit("text_projection", Layout::Same, &mut txt.text_projection)?;
    v.visit("logit_scale", Layout::Scalar, &mut clip.logit_scale)
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
        sd.tensors.remove("attn_mask");
        sd.tensors.remove("visual.attn_mask");
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
    let tok = shape("token_embedding.weight")?;
    let text_width = tok[1];
    let v_mlp = shape("visual.transformer.resblocks.0.mlp.c_fc.weight")?[0];
    let t_mlp = shape("transformer.resblocks.0.mlp.c_fc.weight")?[0];
    let config = ClipConfig {
        embed_dim: shape("text_projection")?[1],
        quick_gelu,
        vision_cfg: VisionConfig {
            image_size: grid * patch,
            patch_size: patch,
            layers: sd.count_blocks("visual.transformer.resblocks."),
            width,
            head_width: 64,
            mlp_ratio: v_mlp as f64 / width as f64,
            timm_model_name: None,
            ls_init_value: None,
            pool_type: None,
            final_ln_after_pool: None,
            attentional_pool: None,
            no_ln_pre: None,
        },
        text_cfg: TextConfig {
            context_length: shape("positional_embedding")?[0],
            vocab_size: tok[0],
            width: text_width,
            heads: text_width / 64,
            layers: sd.count_blocks("transformer.resblocks."),
            mlp_ratio: t_mlp as f64 / text_width as f64,
            hf_model_name: None,
            ls_init_value: None,
            pool_type: None,
            proj_bias: None,
            no_causal_mask: None,
            embed_cls: None,
        },
    };
    config.validate()?;
    Ok(config)
}
