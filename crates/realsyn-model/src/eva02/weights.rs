//! EVA02 tower weights: the walk over open_clip's keys (`visual.trunk.*`, timm's
//! names), and the EVA-CLIP release's layout (BAAI's `EVA02_CLIP_*` checkpoints)
//! mapped onto them, as timm's `eva.checkpoint_filter_fn` maps it.

use anyhow::Result;
use burn::tensor::backend::Backend;

use super::EvaVisionTower;
use super::block::EvaMlp;
use crate::common::state_dict::StateDict;
use crate::common::walk::{Layout, ParamVisitor, visit_linear, visit_ln, visit_stacked_linear};

/// Every parameter of the tower with its key under `prefix` (`visual.trunk` in open_clip).
pub fn visit_eva_tower<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    prefix: &str,
    t: &mut EvaVisionTower<B>,
) -> Result<()> {
    v.visit(
        &format!("{prefix}.cls_token"),
        Layout::Same,
        &mut t.cls_token,
    )?;
    v.visit(
        &format!("{prefix}.pos_embed"),
        Layout::Same,
        &mut t.pos_embed,
    )?;
    v.visit(
        &format!("{prefix}.patch_embed.proj.weight"),
        Layout::Same,
        &mut t.patch_weight,
    )?;
    v.visit(
        &format!("{prefix}.patch_embed.proj.bias"),
        Layout::Same,
        &mut t.patch_bias,
    )?;
    for (i, block) in t.blocks.iter_mut().enumerate() {
        let p = format!("{prefix}.blocks.{i}");
        visit_ln(v, &format!("{p}.norm1"), &mut block.norm1)?;
        let (attn, qkv) = (format!("{p}.attn"), &mut block.attn.qkv);
        let weight = format!("{attn}.qkv.weight");
        let (q_bias, v_bias) = if block.attn.qkv_fused {
            v.visit(&weight, Layout::LinearWeight, &mut qkv.weight)?;
            ("q_bias", "v_bias")
        } else {
            // timm's three `[width, width]` weights are the fused one's rows.
            let parts = ["q", "k", "v"].map(|n| format!("{attn}.{n}_proj.weight"));
            let parts = parts.each_ref().map(String::as_str);
            v.visit_stacked(&weight, &parts, Layout::LinearWeight, &mut qkv.weight)?;
            ("q_proj.bias", "v_proj.bias")
        };
        v.visit(&format!("{attn}.{q_bias}"), Layout::Same, &mut qkv.q_bias)?;
        v.visit(&format!("{attn}.{v_bias}"), Layout::Same, &mut qkv.v_bias)?;
        if let Some(norm) = block.attn.norm.as_mut() {
            visit_ln(v, &format!("{p}.attn.norm"), norm)?;
        }
        visit_linear(v, &format!("{p}.attn.proj"), &mut block.attn.proj)?;
        visit_ln(v, &format!("{p}.norm2"), &mut block.norm2)?;
        match &mut block.mlp {
            EvaMlp::SwiGlu(m) => {
                // timm's `fc1_g` and `fc1_x` are the packed layer's outputs, gate first.
                let parts = ["g", "x"].map(|n| format!("{p}.mlp.fc1_{n}"));
                let parts = parts.each_ref().map(String::as_str);
                visit_stacked_linear(v, &format!("{p}.mlp.fc1"), &parts, &mut m.fc1)?;
                visit_ln(v, &format!("{p}.mlp.norm"), &mut m.norm)?;
                visit_linear(v, &format!("{p}.mlp.fc2"), &mut m.fc2)?;
            }
            EvaMlp::Gelu(m) => {
                visit_linear(v, &format!("{p}.mlp.fc1"), &mut m.c_fc)?;
                visit_linear(v, &format!("{p}.mlp.fc2"), &mut m.c_proj)?;
            }
        }
    }
    visit_ln(v, &format!("{prefix}.norm"), &mut t.norm)?;
    visit_linear(v, &format!("{prefix}.head"), &mut t.head)
}

/// A state dict of an open_clip EVA02 model (`visual.trunk.*`).
pub fn is_open_clip_eva(sd: &StateDict) -> bool {
    sd.contains("visual.trunk.pos_embed")
}

/// A state dict in the EVA-CLIP release's layout (`visual.pos_embed`, `visual.blocks.*`).
pub fn is_eva_clip_release(sd: &StateDict) -> bool {
    sd.contains("visual.pos_embed") && sd.contains("visual.patch_embed.proj.weight")
}

/// EVA-CLIP release keys -> open_clip's: `visual.` -> `visual.trunk.`, `mlp.w1/w2/w3`
/// -> `fc1_g/fc1_x/fc2`, `ffn_ln` -> `norm`, `inner_attn_ln` -> `attn.norm`, the q/v
/// biases of separate projections into `q_proj.bias`/`v_proj.bias`; the saved RoPE
/// tables are dropped (they are recomputed). Text keys (`text.*`) and `logit_scale`
/// are already open_clip's.
pub fn eva_clip_release_to_open_clip(sd: StateDict) -> StateDict {
    let separate_qkv = sd.contains("visual.blocks.0.attn.q_proj.weight");
    let mut out = StateDict::default();
    for (key, tensor) in sd.tensors {
        let Some(rest) = key.strip_prefix("visual.") else {
            out.insert(key, tensor);
            continue;
        };
        if rest.contains("rope") {
            continue;
        }
        let mut k = rest
            .replace("mlp.ffn_ln", "mlp.norm")
            .replace("attn.inner_attn_ln", "attn.norm")
            .replace("mlp.w12", "mlp.fc1")
            .replace("mlp.w1", "mlp.fc1_g")
            .replace("mlp.w2", "mlp.fc1_x")
            .replace("mlp.w3", "mlp.fc2");
        if separate_qkv {
            k = k
                .replace("attn.q_bias", "attn.q_proj.bias")
                .replace("attn.v_bias", "attn.v_proj.bias");
        }
        out.insert(format!("visual.trunk.{k}"), tensor);
    }
    out
}
